"""A note made on a technician's laptop appears in the office's web UI.

Real processes on loopback: a central (`fieldsync run`, gateway on) and a
laptop enrolled with a one-time code. An operator signs in in headless
Chromium and opens a work order assigned to the technician; the laptop,
stopped, adds a note; the laptop runs again and syncs; the operator reloads
and must see the note. PNG screenshots of both moments go to the output
directory.

Arguments: the `fieldsync` binary and the directory for the PNGs. Exits
non-zero (with the nodes' logs) when anything is missing.
"""

import json
import os
import re
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fieldsync_nodes import (
    WAIT_S_MAX, Node, body_text, browser, check, http_json, operator_token, run_test, wait_until,
)

WORK_ORDER = "wo-ui-1"
NOTE = "Relay replaced on site; <b>tested</b> twice"


def scenario(binary, root, out_dir, nodes):
    central = Node(binary, root, "central", "central")
    nodes.append(central)
    secret = re.search(
        r"^client secret:\s+(\S+)$",
        central.fieldsync("user", "add", "op", "--role", "operator"),
        re.M,
    ).group(1)
    added = central.fieldsync("user", "add", "tech-1", "--role", "technician")
    code = re.search(r"^enrollment code:\s+(\S+)$", added, re.M).group(1)
    central_id = re.search(r"^central id:\s+(\S+)$", added, re.M).group(1)
    central.fieldsync(
        "wo", "create", "--id", WORK_ORDER, "--number", "WO-2026-UI0001",
        "--title", "Compressor relay trips", "--customer", "Ana Souza",
        "--address", "Rua Augusta, 1109", "--assignee", "tech-1",
    )
    central.start()

    laptop = Node(binary, root, "field", "laptop-1")
    nodes.append(laptop)
    laptop.fieldsync(
        "enroll", "--central", f"127.0.0.1:{central.sync_port}",
        "--central-id", central_id, "--code", code,
    )
    laptop_id = json.loads(laptop.fieldsync("status", "--json"))["node_id"]
    laptop.start()
    # The store's last seq is shown to the office only.
    token = operator_token(central.url, "op", secret)
    central_seq = http_json(f"{central.url}/healthz", token)["last_seq"]
    wait_until(
        "the laptop to receive the work order",
        lambda: (central.peer(laptop_id) or {}).get("peer_acked_seq", 0) >= central_seq,
    )
    laptop.stop()

    driver = browser()
    try:
        driver.get(f"{central.url}/sign-in")
        driver.find_element(By.NAME, "client_id").send_keys("op")
        driver.find_element(By.NAME, "client_secret").send_keys(secret)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, WAIT_S_MAX).until(lambda d: d.title.startswith("Work orders"))
        check("WO-2026-UI0001" in body_text(driver), "the work order is listed")
        driver.find_element(By.LINK_TEXT, "WO-2026-UI0001").click()
        WebDriverWait(driver, WAIT_S_MAX).until(lambda d: d.title.startswith("WO-2026-UI0001"))
        before = body_text(driver)
        check("No notes." in before, "no notes before the technician writes one")
        check(NOTE not in before, "the note is not there yet")
        driver.save_screenshot(os.path.join(out_dir, "sync-note-before.png"))

        # Offline on the laptop, the technician writes a note; then the
        # laptop runs and syncs.
        noted = laptop.fieldsync("wo", "note", WORK_ORDER, "--text", NOTE)
        laptop_seq = int(noted.split()[-1])
        laptop.start()
        wait_until(
            "the central to hold the laptop's note",
            lambda: (central.peer(laptop_id) or {}).get("checkpoint_seq", 0) >= laptop_seq,
        )

        driver.refresh()
        WebDriverWait(driver, WAIT_S_MAX).until(lambda d: d.title.startswith("WO-2026-UI0001"))
        after = body_text(driver)
        check(NOTE in after, f"the synced note is shown (as text) after reload:\n{after}")
        check("No notes." not in after, "the empty-notes line is gone")
        notes = driver.find_elements(By.CSS_SELECTOR, "div.note")
        check(len(notes) == 1 and "tech-1" in notes[0].text, "one note, by tech-1")
        driver.save_screenshot(os.path.join(out_dir, "sync-note-after.png"))
    finally:
        driver.quit()
    laptop.stop()
    central.stop()


def main():
    binary, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    run_test(
        "fieldsync-ui-sync-",
        lambda root, nodes, _relays: scenario(binary, root, out_dir, nodes),
        f"ok: the laptop's note shows in the UI after sync; screenshots in {out_dir}",
    )


if __name__ == "__main__":
    main()
