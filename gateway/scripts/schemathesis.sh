#!/usr/bin/env bash
# Check the gateway's REST API against its own OpenAPI document with
# schemathesis 4, as an integrator's generated client would meet it:
# every check (`--checks all`: server errors, documented status codes,
# content types and headers, response schemas, schema-valid requests
# accepted and schema-invalid ones refused, use after delete, auth...),
# over every phase (examples, coverage, fuzzing and the stateful phase,
# which chains operations through the document's links). Fails on any
# failure, on a gateway that dies, and on a panic in the gateway's log.
#
# Usage: gateway/scripts/schemathesis.sh [max-examples-per-operation]
# (default 100: about 2 minutes on 2 cores, after a first install of about
# half a minute; `.ci/run` runs it so). Installs schemathesis from
# PyPI into a virtualenv under target/, starts the `serve` example (fresh
# store in a temp dir, sample users and work orders) on a free loopback
# port, takes an operator token, runs schemathesis against /openapi.json,
# then stops the server. SCHEMATHESIS_SEED=N repeats a run; reports (JUnit,
# NDJSON) go to target/schemathesis-report/.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
max_examples="${1:-100}"
venv="${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}"
# Pinned: a new release may add checks, which should land on purpose.
schemathesis_version="${SCHEMATHESIS_VERSION:-4.32.5}"
reports="${SCHEMATHESIS_REPORT_DIR:-$root/target/schemathesis-report}"

if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version | grep -q "version ${schemathesis_version//\*/}"; then
    if ! python3 -m venv "$venv"; then
        # Debian ships `venv` apart from python3.
        if command -v apt-get >/dev/null 2>&1; then
            apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            exit 1
        fi
    fi
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version"
fi
"$venv/bin/st" --version

cargo build --quiet --workspace --example serve --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"
out="$work/serve.log"
touch "$out"
# Longpolls wait at most 1 s here (25 s by default), so a generated
# `feed=longpoll` does not hold a test for half a minute; and the request
# rate is ten times the default, so the run tests more than the limiter.
FIELDSYNC_GATEWAY_LONGPOLL_TIMEOUT_MS_DEFAULT=500 \
    FIELDSYNC_GATEWAY_LONGPOLL_TIMEOUT_MS_MAX=1000 \
    FIELDSYNC_GATEWAY_REQUESTS_PER_S=2000 \
    FIELDSYNC_GATEWAY_REQUEST_BURST=4000 \
    RUST_LOG="${RUST_LOG:-warn}" \
    "$root/target/debug/examples/serve" 127.0.0.1:0 >"$out" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

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
# A list cursor this gateway gave out (one it did not give out is a 400,
# which no schema can tell from a good one: it is sealed).
cursor="$(curl --silent --fail -H "Authorization: Bearer $token" "$url/api/v1/work-orders?page_size=1" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["next_cursor"])')"

# What the document cannot say, and what schemathesis cannot send; only
# that:
# - 412 answers a well-formed `If-Match` that names another version: the
#   version is state, not syntax, so any schema-valid request may get it.
#   412 and 413 (a body over the size limit) refuse a request as surely as
#   400 does, so they count as rejections of invalid data too.
# - A list `cursor` must be one the gateway sealed, and `since` at most the
#   store's last seq: both are state, so the run uses real ones.
# - 422 where a rule spans the state or several members, which JSON Schema
#   cannot state: an assignee must be an active technician (work orders,
#   events), an event's UPDATE or DELETE must name an existing work order,
#   a webhook URL must resolve to a public address and answer the signed
#   test, an operator may not revoke themselves, batch messages follow the
#   batch rules (numbering, `recordCount` = rows, primary-key columns, the
#   batch so far), and an ERP's entities list each table once.
# - The coverage phase writes header values from [A-Za-z0-9] only
#   (schemathesis' coverage/_wire.py, HEADER_ALLOWED_CHARS), so it cannot
#   write an entity tag: where `If-Match`/`If-None-Match` are declared it
#   sends `0` in cases it calls positive, and the gateway rightly answers
#   400. There, and in that phase only, 400 is let through; the fuzzing and
#   stateful phases send real entity tags and are checked in full.
accepted='"2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"'
refused='"400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "5xx"'
config="$work/schemathesis.toml"
{
    echo '[checks.positive_data_acceptance]'
    echo "expected-statuses = [$accepted]"
    echo
    echo '[checks.negative_data_rejection]'
    echo "expected-statuses = [$refused]"
    echo
    echo '[[operations]]'
    echo 'include-name = "GET /api/v1/work-orders"'
    echo "parameters = { cursor = \"$cursor\" }"
    echo
    echo '[[operations]]'
    echo 'include-name = "GET /api/v1/changes"'
    echo 'parameters = { since = "0" }'
    echo
    # Mostly real technicians as assignees, so creates and patches get
    # past the assignee rule and what follows them is tested too.
    # OpenAPI cannot say a query takes no other parameters, so undeclared
    # ones are not sent to reads (schemathesis also sends an undeclared
    # parameter whose value is `[]`, which no query string carries, and
    # then wonders why it was taken).
    echo '[[operations]]'
    echo 'include-method = "GET"'
    echo 'generation.allow-extra-parameters = false'
    echo
    echo '[dictionaries.technicians]'
    echo 'values = ["tech-1", "tech-2"]'
    echo
    echo '[parameters]'
    echo '"body.assignee" = { dictionary = "technicians", probability = 0.8 }'
    echo
} >"$config"
# Each operation with its allowances: `422` (rules beyond JSON Schema),
# `etag` (entity-tag headers the coverage phase cannot write).
while read -r method path flags; do
    statuses="$accepted"
    case "$flags" in *422*) statuses="$statuses, \"422\"" ;; esac
    {
        echo '[[operations]]'
        echo "include-name = \"$method $path\""
        echo "checks.positive_data_acceptance.expected-statuses = [$statuses]"
        case "$flags" in
        *etag*) echo "phases.coverage.checks.positive_data_acceptance.expected-statuses = [$statuses, \"400\"]" ;;
        esac
        echo
    } >>"$config"
done <<'OPERATIONS'
POST /api/v1/work-orders 422
GET /api/v1/work-orders/{id} etag
PATCH /api/v1/work-orders/{id} 422,etag
DELETE /api/v1/work-orders/{id} etag
POST /api/v1/work-orders/{id}/notes etag
POST /api/v1/work-orders/{id}/materials etag
POST /api/v1/work-orders/{id}/materials/{material_id}/state etag
POST /api/v1/work-orders/{id}/status etag
POST /api/v1/work-orders/{id}/closure etag
PUT /api/v1/work-orders/{id}/report etag
POST /api/v1/work-orders/{id}/time etag
GET /api/v1/collections/{collection}/records/{key} etag
PUT /api/v1/collections/{collection}/records/{key} etag
DELETE /api/v1/collections/{collection}/records/{key} etag
POST /api/v1/events 422
POST /api/v1/webhooks 422
POST /api/v1/users/{id}/revoke 422
POST /api/v1/batches/{batch_id}/messages 422
POST /api/v1/batches/{batch_id}/summary 422
PUT /api/v1/entities/{erp} 422
OPERATIONS

seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
    seed=(--seed "$SCHEMATHESIS_SEED")
fi
echo "checking $url against its OpenAPI document, up to $max_examples examples per operation"
status=0
"$venv/bin/st" --config-file "$config" run "$url/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --header "Authorization: Bearer $token" \
    --max-examples "$max_examples" \
    --suppress-health-check all \
    --report junit,ndjson --report-dir "$reports" \
    "${seed[@]}" \
    --no-color || status=$?
if ! kill -0 "$server" 2>/dev/null; then
    echo "the gateway exited during the run:" >&2
    cat "$out" >&2
    exit 1
fi
if grep -Eqi 'panicked|handler panicked' "$out"; then
    echo "the gateway panicked during the run:" >&2
    cat "$out" >&2
    exit 1
fi
exit "$status"
