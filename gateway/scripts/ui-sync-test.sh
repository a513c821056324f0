#!/usr/bin/env bash
# The screens end to end, in headless Chromium (Debian's chromium and
# chromium-driver, driven by Selenium), against real `fieldsync run`
# processes on loopback:
# - ui_sync_test.py: a note added with the CLI on a stopped laptop shows in
#   the office's web UI after sync (target/ui-sync/);
# - apps_test.py: the office console and two technicians' field apps: create
#   and assign in the console, work offline in alice's app, sync back live,
#   approve, a refused forged post, reassign; bob's app never shows alice's
#   work order; a note added with the keyboard alone (target/ui-apps/, every
#   page at 1366x768 and 800x1280, and checked at 1024x768 too).
#
# Usage: gateway/scripts/ui-sync-test.sh
#
# What it installs when missing: chromium and chromium-driver with apt-get
# (so run it as root, or with them installed), and Selenium: Debian's
# python3-selenium when apt-get is there (only Debian's mirrors needed),
# else into a venv from PyPI. A venv that already has Selenium
# ($UI_VENV, default target/ui-venv, made by ui-screenshots.sh) is used
# first.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${UI_VENV:-$root/target/ui-venv}"
out_dir="$root/target/ui-sync"
debian_python=/usr/bin/python3

has_selenium() { [ -x "$1" ] && "$1" -c 'import selenium' 2>/dev/null; }

packages=()
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium chromium-driver)
if has_selenium "$venv/bin/python"; then
    python="$venv/bin/python"
elif has_selenium "$debian_python" || command -v apt-get >/dev/null 2>&1; then
    python="$debian_python"
    has_selenium "$python" || packages+=(python3-selenium)
else
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "selenium==4.*"
    python="$venv/bin/python"
fi
if [ "${#packages[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi

cargo build --quiet --workspace --bin fieldsync --manifest-path "$root/Cargo.toml"
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" |
    "$python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
"$python" "$root/gateway/scripts/ui_sync_test.py" "$target_dir/debug/fieldsync" "$out_dir"
"$python" "$root/gateway/scripts/apps_test.py" "$target_dir/debug/fieldsync" "$root/target/ui-apps"
