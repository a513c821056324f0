#!/usr/bin/env bash
# A note added on a technician's laptop shows in the office's web UI after
# sync: a central (`fieldsync run` with the gateway) and an enrolled laptop
# as real processes on loopback, the UI in headless Chromium (Debian's
# chromium and chromium-driver, through Selenium from PyPI). Sign in as an
# operator, open a work order, add a note on the stopped laptop, run the
# laptop until the central holds the note, reload: the note must be there.
# Saves sync-note-before.png and sync-note-after.png to target/ui-sync/.
#
# Usage: gateway/scripts/ui-sync-test.sh   (installs chromium with apt-get
# when chromedriver is missing, so run it as root or with it installed)
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${UI_VENV:-$root/target/ui-venv}"
out_dir="$root/target/ui-sync"

if ! command -v chromedriver >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "selenium==4.*"
fi

cargo build --quiet --bin fieldsync --manifest-path "$root/Cargo.toml"
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
"$venv/bin/python" "$root/gateway/scripts/ui_sync_test.py" "$target_dir/debug/fieldsync" "$out_dir"
