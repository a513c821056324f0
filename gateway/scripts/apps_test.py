"""The people's screens end to end: the office console and two field apps.

Real processes on loopback: a central (`fieldsync run`, gateway on) and two
enrolled laptops (alice, bob), each serving its field app. alice's laptop
reaches the central through a UDP relay the test cuts to take her offline
while every program keeps running. Two headless Chromium sessions, the
operator's and alice's, drive the screens as people would:

1. the operator creates a work order for alice in the console (its number
   is the central's next, WO-YEAR-000001), then one for bob; alice's
   appears in her app; once bob's own has reached his app (so his laptop
   has synced past alice's), his list does not have alice's, and her work
   order's address in his app is refused with a plain page;
2. alice's network goes down; her app says offline; she adds a note (one
   with the mouse, one with the keyboard alone), requests a material,
   writes the report, starts and stops time, signs on the pad and closes
   the work order; on the way a crafted form post from her app (changing
   the customer, which the field may not do) is refused with a plain
   message and writes nothing (the count of changes waiting to go out
   stays as it was);
3. the network comes back; the operator's open page shows all of it
   without a reload (live updates);
4. the operator approves the material and alice sees it approved;
5. the operator reassigns the work order to bob: it leaves alice's app
   with a plain message and reaches bob's laptop.

Every page is saved as PNG at 1366x768 and 800x1280 (the viewport, set
through Chrome DevTools, so each PNG is exactly that size) and checked at
those sizes and at 1024x768 for sideways scrolling.

Arguments: the `fieldsync` binary and the directory for the PNGs. Exits
non-zero (with the nodes' logs) when anything is missing.
"""

import os
import re
import struct
import sys
import time

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from fieldsync_nodes import (
    WAIT_S_MAX, Failure, Node, Relay, body_text, browser, check, run_test, wait_until,
)

# Saved as PNG at these viewport sizes.
SIZES = {"laptop": (1366, 768), "tablet": (800, 1280)}
# Checked (no sideways scrolling) at these too, not saved.
CHECKED_SIZES = [(1024, 768)]
# The page's form fields a person cannot tell apart without sight: no
# <label> and no aria-label.
UNLABELED_FIELDS = """
return Array.from(document.querySelectorAll(
    'input:not([type=hidden]):not([type=submit]), select, textarea'))
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .map(e => e.outerHTML.slice(0, 120));
"""
TITLE = "Compressor relay trips"
CUSTOMER = "Ana Souza"
NOTE = "Relay replaced; <b>tested</b> twice"
KEYBOARD_NOTE = "Typed with the keyboard alone"
BOB_TITLE = "Boiler pressure low"
BOB_CUSTOMER = "Rui Costa"
REPORT = "Replaced the start relay; compressor runs 20 min without tripping."
RESOLUTION = "Relay replaced and tested."
# Reassignment grace on the central: short, so alice's laptop drops the
# work order soon after it is reassigned.
GRACE_MS = 1500


def set_viewport(driver, width, height):
    """Make the page's viewport exactly `width` x `height` CSS pixels at
    one device pixel each (the window's own size would lose the browser's
    frame), so a screenshot is that size."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.2)


def png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        header = f.read(24)
    check(header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path}: not a PNG")
    return struct.unpack(">II", header[16:24])


def check_no_sideways_scroll(driver, name, width, height):
    overflow = driver.execute_script(
        "const e = document.scrollingElement; return e.scrollWidth - e.clientWidth")
    check(overflow <= 0, f"{name} at {width}x{height} scrolls sideways by {overflow} px")


class Screens:
    """Screenshots of every page at both sizes, named in order."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    def save(self, driver, name):
        """Save the page at each size, checking on the way that every field
        has a label and that nothing needs sideways scrolling (at the saved
        sizes and at CHECKED_SIZES)."""
        self.count += 1
        unlabeled = driver.execute_script(UNLABELED_FIELDS)
        check(not unlabeled, f"{name}: fields without a label: {unlabeled}")
        try:
            for label, (width, height) in SIZES.items():
                set_viewport(driver, width, height)
                check_no_sideways_scroll(driver, name, width, height)
                path = os.path.join(self.out_dir, f"{self.count:02d}-{name}-{label}.png")
                check(driver.save_screenshot(path), f"{path}: not saved")
                size = png_size(path)
                check(size == (width, height), f"{path} is {size[0]}x{size[1]}, not {width}x{height}")
            for width, height in CHECKED_SIZES:
                set_viewport(driver, width, height)
                check_no_sideways_scroll(driver, name, width, height)
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def wait_text(driver, what, text, refresh=False):
    """Wait until the page's text holds `text` (reloading each time when
    `refresh`; otherwise the page must change by itself)."""

    def holds():
        if refresh:
            driver.refresh()
        try:
            return text in body_text(driver)
        except StaleElementReferenceException:
            return False  # the page reloaded itself while being read

    deadline = time.monotonic() + WAIT_S_MAX
    while not holds():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}: {text!r} not on {driver.current_url}")
        time.sleep(0.5 if refresh else 0.1)


def submit(driver, form_id, fields=None, selects=None):
    """Fill a form's fields by name and submit it with its button."""
    form = driver.find_element(By.ID, form_id)
    for name, value in (fields or {}).items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    for name, value in (selects or {}).items():
        Select(form.find_element(By.NAME, name)).select_by_value(value)
    click_and_wait(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def click_and_wait(driver, button):
    """Click and wait until the next page has replaced this one (a mark
    left on this page's window is gone, and the new one has loaded)."""
    driver.execute_script("window.fieldsyncOldPage = true;")
    button.click()
    wait_for_new_page(driver)


def wait_for_new_page(driver):
    WebDriverWait(driver, WAIT_S_MAX).until(lambda d: d.execute_script(
        "return window.fieldsyncOldPage === undefined && document.readyState === 'complete'"))


def flash(driver):
    """What the page says about the last action: its flash, else its
    error, else nothing."""
    for id in ("flash", "error"):
        found = driver.find_elements(By.ID, id)
        if found:
            return found[0].text
    return ""


def sign_in(driver, central, secret):
    driver.get(f"{central.url}/sign-in")
    driver.find_element(By.NAME, "client_id").send_keys("op")
    driver.find_element(By.NAME, "client_secret").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, WAIT_S_MAX).until(lambda d: d.title.startswith("Work orders"))


def create_in_console(office, central, screens):
    office.get(f"{central.url}/ui/work-orders/new")
    screens.save(office, "console-new-work-order")
    submit(
        office,
        "create-work-order",
        {
            "title": TITLE,
            "customer_name": CUSTOMER,
            "customer_address": "Rua Augusta, 1109",
            "description": "Trips twice a day since Monday.",
        },
        {"assignee": "alice"},
    )
    check("Saved" in flash(office), f"created: {flash(office)}")
    number = re.search(r"WO-\d{4}-\d{6}", office.title)
    check(number is not None, f"the console names the new number: {office.title}")
    number = number.group(0)
    check(number.endswith("-000001"), f"the central's first number: {number}")
    screens.save(office, "console-work-order")
    return number, office.current_url


def create_for_bob(office, central):
    """A work order of bob's own, created after alice's: once it is in
    bob's app, his laptop has synced past alice's."""
    office.get(f"{central.url}/ui/work-orders/new")
    submit(
        office,
        "create-work-order",
        {"title": BOB_TITLE, "customer_name": BOB_CUSTOMER,
         "customer_address": "Rua do Ouro, 40", "description": "Drops to 0.5 bar overnight."},
        {"assignee": "bob"},
    )
    check("Saved" in flash(office), f"created: {flash(office)}")
    number = re.search(r"WO-\d{4}-\d{6}", office.title)
    check(number is not None, f"the console names the new number: {office.title}")
    return number.group(0)


def bob_never_sees(bob, bob_app, number, bob_number, work_order_id):
    """bob's app, synced past alice's work order, neither lists it nor
    shows it at its own address."""
    bob.get(bob_app + "/")
    wait_text(bob, "bob's own work order in his app", bob_number, refresh=True)
    listed = body_text(bob)
    for text in (number, TITLE, CUSTOMER):
        check(text not in listed, f"bob's app lists alice's work order ({text!r}): {listed!r}")
    bob.get(f"{bob_app}/wo/{work_order_id}")
    shown = body_text(bob)
    check(bob.find_elements(By.ID, "gone") or bob.find_elements(By.ID, "not-found"),
          f"alice's work order at its address in bob's app is refused: {shown!r}")
    check(not bob.find_elements(By.ID, "note-form"), "no forms for alice's work order in bob's app")
    for text in (number, TITLE, CUSTOMER):
        check(text not in shown, f"bob's app shows alice's work order ({text!r}): {shown!r}")


def pending_changes(driver):
    """The sync bar's count of changes waiting to go out (0 for nothing)."""
    text = driver.find_element(By.ID, "sync-pending").text
    if "nothing waiting to go out" in text:
        return 0
    found = re.search(r"\b(\d+) changes? waiting to go out", text)
    check(found, f"a count of changes waiting: {text!r}")
    return int(found.group(1))


def keyboard_note(driver, text):
    """Add a note with the keyboard alone: Tab to the note field, type,
    Tab to its button, Enter."""
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    field = "document.activeElement === document.querySelector('#note-form textarea[name=text]')"
    button = ("document.activeElement === "
              "document.querySelector('#note-form button[type=submit]')")
    for target, what in ((field, "the note field"), (button, "the note's button")):
        for _ in range(80):
            if driver.execute_script(f"return {target}"):
                break
            ActionChains(driver).send_keys(Keys.TAB).perform()
        else:
            raise Failure(f"Tab never reached {what}")
        if target == field:
            ActionChains(driver).send_keys(text).perform()
    driver.execute_script("window.fieldsyncOldPage = true;")
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait_for_new_page(driver)


def work_offline(alice, number, screens):
    """alice works the order with no network: every action saved locally."""
    alice.find_element(By.PARTIAL_LINK_TEXT, number).click()
    WebDriverWait(alice, WAIT_S_MAX).until(lambda d: number in d.title)
    detail = alice.current_url
    screens.save(alice, "field-work-order")
    submit(alice, "note-form", {"text": NOTE})
    check("Saved" in flash(alice), "the note is saved")
    keyboard_note(alice, KEYBOARD_NOTE)
    check("Saved" in flash(alice), f"the keyboard's note is saved: {body_text(alice)!r}")
    check(KEYBOARD_NOTE in body_text(alice), "the keyboard's note is on the page")
    submit(alice, "material-form", {"sku": "RLY-220", "qty": "2", "unit": "pc",
                                     "description": "Start relay 220 V"})
    check("Saved" in flash(alice), "the material request is saved")
    submit(alice, "report-form", {"text": REPORT})
    check("Saved" in flash(alice), "the report is saved")
    submit(alice, "time-start-form")
    check("Saved" in flash(alice), "time started")
    submit(alice, "time-stop-form")
    check("Saved" in flash(alice), "time stopped")
    forbidden_post(alice, detail, screens)
    sign(alice)
    screens.save(alice, "field-closing")
    submit(alice, "close-form", {"resolution": RESOLUTION, "signed_by": CUSTOMER})
    check("Saved" in flash(alice), f"the closure is saved: {body_text(alice)}")
    status = alice.find_element(By.ID, "wo-status").text
    check("completed" in status.lower(), f"completed: {status}")
    pending = alice.find_element(By.ID, "sync-pending").text
    check(re.search(r"\b\d+ changes waiting to go out", pending), f"offline edits wait: {pending}")
    screens.save(alice, "field-closed-offline")
    return detail


def sign(driver):
    """Draw a signature on the pad: two strokes."""
    pad = driver.find_element(By.ID, "signature-pad")
    actions = ActionChains(driver)
    actions.move_to_element_with_offset(pad, -60, 0).click_and_hold()
    for dx, dy in ((20, -15), (20, 15), (20, -15), (20, 15)):
        actions.move_by_offset(dx, dy)
    actions.release().perform()
    actions = ActionChains(driver)
    actions.move_to_element_with_offset(pad, 30, -10).click_and_hold()
    actions.move_by_offset(10, 25).release().perform()
    value = driver.find_element(By.NAME, "signature").get_attribute("value")
    check(value, "the pad filled the signature field")


def forbidden_post(alice, detail, screens):
    """A crafted post, with the page's own form token, that changes the
    customer from the field: refused in words (saved as it shows),
    nothing written: the customer is as it was and no change waits to go
    out that did not before."""
    alice.get(detail)
    pending = pending_changes(alice)
    check(pending > 0, "alice's offline changes wait to go out")
    token = alice.find_element(By.NAME, "csrf_token").get_attribute("value")
    alice.execute_script("window.fieldsyncOldPage = true;")
    alice.execute_script(
        """
        const form = document.createElement('form');
        form.method = 'post';
        form.action = arguments[0];
        for (const [name, value] of Object.entries(arguments[1])) {
          const input = document.createElement('input');
          input.type = 'hidden'; input.name = name; input.value = value;
          form.appendChild(input);
        }
        document.body.appendChild(form);
        form.submit();
        """,
        detail + "/edit",
        {"csrf_token": token, "customer_name": "Mallory"},
    )
    wait_for_new_page(alice)
    message = alice.find_element(By.ID, "error").text
    check("can't change the customer from the field" in message,
          f"a message a person understands: {message!r}")
    screens.save(alice, "field-refused")
    alice.get(detail)
    check("Mallory" not in body_text(alice), "nothing was written")
    check(CUSTOMER in body_text(alice), "the customer is unchanged")
    after = pending_changes(alice)
    check(after == pending, f"changes waiting to go out: {pending} before the post, {after} after")


def scenario(binary, root, out_dir, nodes, relays):
    screens = Screens(out_dir)
    central = Node(binary, root, "central", "central",
                   {("[sync]", "grace_ms"): str(GRACE_MS)})
    nodes.append(central)
    secret = re.search(r"^client secret:\s+(\S+)$",
                       central.fieldsync("user", "add", "op", "--role", "operator"),
                       re.M).group(1)
    codes = {}
    for tech in ("alice", "bob"):
        added = central.fieldsync("user", "add", tech, "--role", "technician")
        codes[tech] = re.search(r"^enrollment code:\s+(\S+)$", added, re.M).group(1)
        central_id = re.search(r"^central id:\s+(\S+)$", added, re.M).group(1)
    central.start()
    relay = Relay(central.sync_port)
    relays.append(relay)
    laptops = {}
    for tech in ("alice", "bob"):
        laptop = Node(binary, root, "field", f"{tech}-laptop")
        nodes.append(laptop)
        address = relay.address if tech == "alice" else f"127.0.0.1:{central.sync_port}"
        laptop.fieldsync("enroll", "--central", address, "--central-id", central_id,
                         "--code", codes[tech])
        laptop.start()
        laptops[tech] = laptop

    office, alice, bob = browser(), browser(), browser()
    try:
        sign_in(office, central, secret)
        screens.save(office, "console-list")
        number, console_page = create_in_console(office, central, screens)
        bob_number = create_for_bob(office, central)
        alice.get(laptops["alice"].app_open_url())
        bob.get(laptops["bob"].app_open_url())
        wait_text(alice, "the work order in alice's app", number, refresh=True)
        check("online" in alice.find_element(By.ID, "sync-state").text.lower(), "alice online")
        work_order_id = alice.find_element(By.PARTIAL_LINK_TEXT, number) \
            .get_attribute("href").rstrip("/").rsplit("/", 1)[1]
        screens.save(alice, "field-list")
        bob_never_sees(bob, laptops["bob"].app_url, number, bob_number, work_order_id)
        bob.get(laptops["bob"].app_url + "/")
        screens.save(bob, "field-list-bob")

        relay.cut()
        wait_until("alice's app to say offline", lambda: (
            alice.refresh() or
            alice.find_element(By.ID, "sync-state").get_attribute("data-online") == "no"))
        detail = work_offline(alice, number, screens)

        office.get(console_page)
        check(NOTE not in body_text(office), "the console lacks the note while alice is offline")
        relay.restore()
        for what, text in (("note", NOTE), ("report", REPORT), ("resolution", RESOLUTION),
                           ("material", "RLY-220")):
            wait_text(office, f"the console to show alice's {what} live", text)
        check(office.find_elements(By.CSS_SELECTOR, "svg.signature, .signature svg, img.signature"),
              "the console shows the signature")
        screens.save(office, "console-work-order-synced")
        alice.get(detail)
        wait_text(alice, "alice's app to say her changes went out", "nothing waiting to go out",
                  refresh=True)

        approve = office.find_element(By.CSS_SELECTOR, "form[id^=approve-material-]")
        click_and_wait(office, approve.find_element(By.CSS_SELECTOR, "button[type=submit]"))
        check("Saved" in flash(office), f"approved: {flash(office)}")
        alice.get(detail)
        wait_text(alice, "alice to see the material approved", "approved", refresh=True)
        screens.save(alice, "field-material-approved")

        office.get(console_page)
        submit(office, "assign", selects={"assignee": "bob"})
        check("Saved" in flash(office), f"reassigned: {flash(office)}")
        alice.get(detail)
        wait_text(alice, "the work order to leave alice's laptop", "no longer on this laptop",
                  refresh=True)
        check(alice.find_elements(By.ID, "gone"), "a plain message, not an error")
        screens.save(alice, "field-reassigned")
        alice.get(laptops["alice"].app_url + "/")
        check(number not in alice.find_element(By.ID, "work-orders").text if
              alice.find_elements(By.ID, "work-orders") else True,
              "the list no longer has it")
        # Completed, so not on bob's list of open work; his laptop holds it.
        bob.get(laptops["bob"].app_url + "/wo/" + detail.rsplit("/", 1)[1])
        wait_text(bob, "the work order on bob's laptop", RESOLUTION, refresh=True)
        screens.save(bob, "field-work-order-bob")

        office.get(f"{central.url}/ui/users")
        screens.save(office, "console-users")
    finally:
        for driver in (office, alice, bob):
            driver.quit()
    for node in nodes:
        node.stop()


def main():
    binary, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    run_test(
        "fieldsync-apps-",
        lambda root, nodes, relays: scenario(binary, root, out_dir, nodes, relays),
        f"ok: console and field apps end to end; screenshots in {out_dir}",
    )


if __name__ == "__main__":
    main()
