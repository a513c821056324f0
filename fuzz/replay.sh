#!/usr/bin/env bash
# Replays every committed fuzz corpus and artifact file (fuzz/corpus/<target>,
# fuzz/artifacts/<target>) through the fuzz targets' functions, built as an
# ordinary test on the stable toolchain: no libFuzzer, no nightly. A few
# seconds once built. CI: `fuzz/replay.sh` (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"
# Release, as `cargo fuzz` builds the targets (no debug assertions).
exec cargo test --release --locked --test replay "$@"
