#!/usr/bin/env bash
# The whole test suite, end-to-end tests included (they start their own livekit-server).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
step "running the tests"
uv run pytest "$@"
