#!/usr/bin/env bash
# Drive the web UI in headless Chromium (Debian's chromium and
# chromium-driver, through Selenium from PyPI): sign in, list, open a work
# order, the changes feed and peers, as an operator and as a technician.
# Saves PNG screenshots to target/ui-screenshots/ and fails if a page does
# not show what it should.
#
# Usage: gateway/scripts/ui-screenshots.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${UI_VENV:-$root/target/ui-venv}"
out_dir="$root/target/ui-screenshots"

if ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "selenium==4.*"
fi

cargo build --quiet --workspace --example serve --manifest-path "$root/Cargo.toml"
log="$(mktemp)"
"$root/target/debug/examples/serve" 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
    grep -q '^user=erp' "$log" && break
    sleep 0.1
done
mkdir -p "$out_dir"
"$venv/bin/python" "$root/gateway/scripts/ui_screenshots.py" "$log" "$out_dir"
