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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S_MAX = 30
POLL_S = 0.05
WORK_ORDER = "wo-ui-1"
NOTE = "Relay replaced on site; <b>tested</b> twice"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_until(what, predicate):
    deadline = time.monotonic() + WAIT_S_MAX
    while not predicate():
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One data directory and, while it runs, its `fieldsync run`."""

    def __init__(self, binary, root, role, name):
        self.binary = binary
        self.dir = os.path.join(root, name)
        self.log = os.path.join(root, f"{name}.log")
        self.process = None
        self.fieldsync("init", "--role", role, "--name", name)
        self.sync_port = free_port(socket.SOCK_DGRAM)
        self.gateway_port = free_port(socket.SOCK_STREAM) if role == "central" else None
        self.configure()

    def configure(self):
        """Loopback ports, quick redials, the gateway on the central."""
        path = os.path.join(self.dir, "fieldsync.toml")
        values = {
            ("[sync]", "listen"): f'"127.0.0.1:{self.sync_port}"',
            ("[sync]", "keep_alive_ms"): "500",
            ("[sync]", "idle_timeout_ms"): "3000",
            ("[sync]", "reconnect_delay_ms_min"): "100",
            ("[sync]", "reconnect_delay_ms_max"): "1000",
            ("[gateway]", "enabled"): "true" if self.gateway_port else "false",
        }
        if self.gateway_port:
            values[("[gateway]", "listen")] = f'"127.0.0.1:{self.gateway_port}"'
        section, lines = "", []
        for line in open(path, encoding="utf-8").read().splitlines():
            if line.startswith("["):
                section = line.strip()
            key = line.split(" = ")[0]
            if (section, key) in values:
                line = f"{key} = {values[(section, key)]}"
            lines.append(line)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def fieldsync(self, *args):
        done = subprocess.run(
            [self.binary, "--dir", self.dir, *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in ("FIELDSYNC_DIR", "RUST_LOG")},
        )
        check(done.returncode == 0, f"fieldsync {' '.join(args)}: {done.stderr}{done.stdout}")
        return done.stdout

    @property
    def url(self):
        return f"http://127.0.0.1:{self.gateway_port}"

    def status_file(self):
        try:
            with open(os.path.join(self.dir, "sync-status.json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def peer(self, node_id):
        status = self.status_file() or {}
        return next((p for p in status.get("peers", []) if p["node_id"] == node_id), None)

    def start(self):
        log = open(self.log, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            [self.binary, "--dir", self.dir, "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        pid = self.process.pid

        def started():
            check(self.process.poll() is None, f"{self.dir}: fieldsync run exited")
            status = self.status_file()
            return status is not None and status.get("pid") == pid

        wait_until(f"{self.dir} to run", started)
        if self.gateway_port:
            wait_until("the gateway to answer", lambda: http_ok(f"{self.url}/healthz"))

    def stop(self):
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=WAIT_S_MAX)
        self.process = None
        check(code == 0, f"{self.dir}: fieldsync run exited with {code}")

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def http_json(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=WAIT_S_MAX) as response:
        return json.load(response)


def operator_token(base, client_id, secret):
    """A bearer token from the central's token endpoint (client credentials)."""
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    ).encode()
    with urllib.request.urlopen(f"{base}/oauth/token", data=form, timeout=WAIT_S_MAX) as response:
        return json.load(response)["access_token"]


def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def body_text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


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
    nodes = []
    with tempfile.TemporaryDirectory(prefix="fieldsync-ui-sync-") as root:
        try:
            scenario(binary, root, out_dir, nodes)
        except Failure as failure:
            print(f"FAIL: {failure}", file=sys.stderr)
            for node in nodes:
                print(f"--- {node.log}", file=sys.stderr)
                if os.path.exists(node.log):
                    print(open(node.log, encoding="utf-8").read()[-4000:], file=sys.stderr)
            sys.exit(1)
        finally:
            for node in nodes:
                node.kill()
    print(f"ok: the laptop's note shows in the UI after sync; screenshots in {out_dir}")


if __name__ == "__main__":
    main()
