"""Real fieldsync processes on loopback for the UI scripts.

`Node` is one data directory and, while it runs, its `fieldsync run`;
`Relay` is a UDP relay a laptop dials instead of its central, which the
test can cut and restore to take the laptop offline while both processes
keep running (a network outage, not a stopped program). `browser()` is
headless Chromium through Selenium.
"""

import json
import os
import sys
import tempfile
import traceback
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT_S_MAX = 30
POLL_S = 0.05
# A UDP datagram, at most.
DATAGRAM_BYTES_MAX = 65535


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


def set_toml(path, values):
    """Set `values` ({(section, key): TOML value}) in the config at `path`:
    a key the file has is replaced in place, one it lacks is added to its
    section, a section it lacks is added at the end."""
    section, lines, done = "", [], set()

    def add_missing(section):
        for (s, key), value in values.items():
            if s == section and (s, key) not in done:
                lines.append(f"{key} = {value}")
                done.add((s, key))

    for line in open(path, encoding="utf-8").read().splitlines():
        if line.startswith("["):
            add_missing(section)
            section = line.strip()
        key = line.split(" = ")[0].lstrip("# ")
        if (section, key) in values and (section, key) not in done:
            line = f"{key} = {values[(section, key)]}"
            done.add((section, key))
        lines.append(line)
    add_missing(section)
    for s in sorted({s for (s, _) in values if (s, _) not in done}):
        lines.append(s)
        add_missing(s)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


class Relay:
    """A UDP relay on loopback between one laptop and its central: the
    laptop dials `address`; `cut()` drops every datagram both ways (the
    network is down, both programs keep running), `restore()` forwards
    again."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.laptop = None
        self.up = True
        self.running = True
        for pump in (self._from_laptop, self._from_central):
            threading.Thread(target=pump, daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _from_laptop(self):
        while self.running:
            try:
                data, source = self.front.recvfrom(DATAGRAM_BYTES_MAX)
            except OSError:
                return
            self.laptop = source
            if self.up:
                self.back.sendto(data, self.upstream)

    def _from_central(self):
        while self.running:
            try:
                data, _ = self.back.recvfrom(DATAGRAM_BYTES_MAX)
            except OSError:
                return
            if self.up and self.laptop is not None:
                self.front.sendto(data, self.laptop)

    def cut(self):
        self.up = False

    def restore(self):
        self.up = True

    def close(self):
        self.running = False
        self.front.close()
        self.back.close()


class Node:
    """One data directory and, while it runs, its `fieldsync run`.

    A central serves the gateway; a field node serves its field app on a
    loopback port of its own.
    """

    def __init__(self, binary, root, role, name, settings=None):
        self.binary = binary
        self.name = name
        self.dir = os.path.join(root, name)
        self.log = os.path.join(root, f"{name}.log")
        self.process = None
        self.fieldsync("init", "--role", role, "--name", name)
        self.sync_port = free_port(socket.SOCK_DGRAM)
        self.gateway_port = free_port(socket.SOCK_STREAM) if role == "central" else None
        self.app_port = free_port(socket.SOCK_STREAM) if role == "field" else None
        self.configure(settings or {})

    def configure(self, settings):
        """Loopback ports, quick redials, the gateway on the central, the
        field app on a laptop; then `settings` ({(section, key): value})."""
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
        if self.app_port:
            values[("[field_app]", "listen")] = f'"127.0.0.1:{self.app_port}"'
        values.update(settings)
        set_toml(os.path.join(self.dir, "fieldsync.toml"), values)

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

    @property
    def app_url(self):
        return f"http://127.0.0.1:{self.app_port}"

    def app_open_url(self):
        """The field app's open URL with its local key, as the node wrote it
        for the laptop's own browser."""
        path = os.path.join(self.dir, "field-app.url")
        wait_until(f"{path} to be written", lambda: os.path.exists(path))
        return open(path, encoding="utf-8").read().strip()

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
        if self.app_port:
            wait_until("the field app to answer", lambda: http_answers(self.app_url))

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


def http_answers(url):
    """Whether anything answers HTTP at `url` (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
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


def browser(size="1280,1000"):
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={size}"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def body_text(driver):
    return driver.find_element(By.TAG_NAME, "body").text




def run_test(prefix, scenario, done):
    """Run `scenario(root, nodes, relays)` in a fresh directory; on a
    failure print it with the tail of every node's log and exit 1; always
    kill the nodes and close the relays; print `done` when it passed."""
    nodes, relays = [], []
    with tempfile.TemporaryDirectory(prefix=prefix) as root:
        try:
            scenario(root, nodes, relays)
        except (Failure, WebDriverException) as failure:
            traceback.print_exc()
            print(f"FAIL: {failure}", file=sys.stderr)
            for node in nodes:
                print(f"--- {node.log}", file=sys.stderr)
                if os.path.exists(node.log):
                    print(open(node.log, encoding="utf-8").read()[-4000:], file=sys.stderr)
            sys.exit(1)
        finally:
            for node in nodes:
                node.kill()
            for relay in relays:
                relay.close()
    print(done)
