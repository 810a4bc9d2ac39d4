#!/usr/bin/env bash
# The whole local stack: livekit-server + the agent worker on the embedded local defaults.
# Ctrl+C stops both.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example"; }
bash scripts/livekit-server.sh start
trap 'bash scripts/livekit-server.sh stop' EXIT
step "starting the agent worker (python -m agent start)"
cat <<MSG

  The agent registers with ws://127.0.0.1:7880 as "${AGENT_NAME:-voice-agent}".
  Next, from another terminal:
    uv run python -m agent call --say "What a lovely day it is"   # speaks into a room, prints both transcripts
  livekit-server log: .run/livekit-server.log

MSG
uv run python -m agent start
