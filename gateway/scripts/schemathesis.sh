#!/usr/bin/env bash
# Fuzz the gateway's REST API from its own OpenAPI document with
# schemathesis, and fail on any 5xx (or other server error check).
#
# Usage: gateway/scripts/schemathesis.sh [max-examples-per-operation]
# Installs schemathesis from PyPI into a virtualenv under target/, starts
# the `serve` example (fresh store in a temp dir, sample users and work
# orders) on a free loopback port, takes an operator token, runs
# schemathesis against /openapi.json, then stops the server.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
max_examples="${1:-50}"
venv="${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}"
schemathesis_version="${SCHEMATHESIS_VERSION:-4.*}"

if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi
"$venv/bin/st" --version

cargo build --quiet -p fieldsync-gateway --example serve --manifest-path "$root/Cargo.toml"
out="$(mktemp)"
"$root/target/debug/examples/serve" 127.0.0.1:0 >"$out" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$out"' EXIT

for _ in $(seq 1 100); do
    grep -q '^user=erp' "$out" && break
    sleep 0.1
done
url="$(sed -n 's/^url=//p' "$out")"
secret="$(sed -n 's/^user=op role=operator secret=//p' "$out")"
if [ -z "$url" ] || [ -z "$secret" ]; then
    echo "the serve example did not start:" >&2
    cat "$out" >&2
    exit 1
fi
token="$(curl --silent --fail -u "op:$secret" -d grant_type=client_credentials "$url/oauth/token" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

echo "fuzzing $url with up to $max_examples examples per operation"
"$venv/bin/st" run "$url/openapi.json" \
    --checks not_a_server_error \
    --header "Authorization: Bearer $token" \
    --max-examples "$max_examples" \
    --suppress-health-check all \
    --no-color
if ! kill -0 "$server" 2>/dev/null; then
    echo "the gateway exited during the run:" >&2
    cat "$out" >&2
    exit 1
fi
