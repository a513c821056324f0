"""Sign in to the fieldsync web UI in headless Chromium and screenshot it.

Arguments: the `serve` example's output (URL and user secrets) and the
directory for the PNGs. Exits non-zero when a page lacks what it should
show.
"""

import re
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def read_serve_output(path):
    text = open(path, encoding="utf-8").read()
    url = re.search(r"^url=(\S+)$", text, re.M).group(1)
    secrets = dict(re.findall(r"^user=(\S+) role=\S+ secret=(\S+)$", text, re.M))
    return url, secrets


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def check(condition, message):
    if not condition:
        print(f"FAIL: {message}", file=sys.stderr)
        sys.exit(1)


def wait_for_title(driver, prefix):
    """Wait until a form submission has landed on the page titled so."""
    try:
        WebDriverWait(driver, 10).until(lambda d: d.title.startswith(prefix))
    except Exception:
        pass
    return driver.title.startswith(prefix)


def sign_in(driver, url, user, secret):
    driver.get(f"{url}/sign-in")
    driver.find_element(By.NAME, "client_id").send_keys(user)
    driver.find_element(By.NAME, "client_secret").send_keys(secret)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait_for_title(driver, "Work orders"), f"{user} signed in (title {driver.title!r})")


def main():
    serve_output, out_dir = sys.argv[1], sys.argv[2]
    url, secrets = read_serve_output(serve_output)
    driver = browser()
    try:
        sign_in(driver, url, "op", secrets["op"])
        rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        check(len(rows) == 6, f"operator sees 6 work orders, saw {len(rows)}")
        driver.save_screenshot(f"{out_dir}/operator-work-orders.png")

        driver.get(f"{url}/ui/work-orders/wo-0")
        body = driver.find_element(By.TAG_NAME, "body").text
        check("<b>loudly</b>" in body, "markup in data is shown as text, not rendered")
        check("Status log" in body and "Materials" in body, "detail sections present")
        driver.save_screenshot(f"{out_dir}/operator-work-order.png")

        driver.get(f"{url}/ui/changes")
        check("Changes after seq" in driver.find_element(By.TAG_NAME, "body").text, "changes page")
        driver.save_screenshot(f"{out_dir}/operator-changes.png")

        driver.get(f"{url}/ui/peers")
        driver.save_screenshot(f"{out_dir}/operator-peers.png")

        driver.find_element(By.CSS_SELECTOR, "header form button").click()
        check(wait_for_title(driver, "Sign in"), f"signed out (title {driver.title!r})")

        sign_in(driver, url, "tech-1", secrets["tech-1"])
        links = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "tbody a")]
        check(links == ["WO-2026-000000", "WO-2026-000003"], f"technician sees only own: {links}")
        driver.save_screenshot(f"{out_dir}/technician-work-orders.png")
        driver.get(f"{url}/ui/work-orders/wo-1")
        check("Not found" in driver.title, "another technician's work order is not found")
    finally:
        driver.quit()
    print(f"ui screenshots in {out_dir}")


if __name__ == "__main__":
    main()
