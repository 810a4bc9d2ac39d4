#!/usr/bin/env bash
# The whole test suite, end-to-end tests included (they start their own livekit-server).
# Most of an end-to-end test is a call going on in real time, so the modules run side by side in
# TEST_PROCESSES processes (pytest-xdist); then the tests marked `alone`, which load every core
# on purpose, run by themselves (tests/conftest.py).
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
step "running the tests"
# --no-loadscope-reorder: in the order tests/conftest.py sorts them, longest first
uv run pytest -n "${TEST_PROCESSES:-3}" --dist loadfile --no-loadscope-reorder "$@"
step "running the tests that need the machine to themselves"
status=0
uv run pytest --alone "$@" || status=$?
[ "$status" = 5 ] && status=0  # 5: none selected (e.g. -m unit)
exit "$status"
