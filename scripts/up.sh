#!/usr/bin/env bash
# The whole local stack: livekit-server, the browser page + token endpoint, and the agent
# worker on the embedded local defaults. Ctrl+C stops them all.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example"; }
bash scripts/livekit-server.sh start
step "starting the page and its token endpoint (python -m agent web; log: .run/web.log)"
uv run python -m agent web >"$RUN/web.log" 2>&1 &
WEB_PID=$!
trap 'kill "$WEB_PID" 2>/dev/null || true; bash scripts/livekit-server.sh stop' EXIT
trap 'exit 130' INT TERM HUP  # so that Ctrl+C or a closed terminal still runs the EXIT trap
for _ in $(seq 300); do  # its first line says where the page is (WEB_HOST/WEB_PORT in .env)
  PAGE_URL="$(sed -n 's/^page on \([^ ]*\).*/\1/p' "$RUN/web.log")"
  [ -n "$PAGE_URL" ] && break
  kill -0 "$WEB_PID" 2>/dev/null || die "the page server stopped: $(tail -n 1 "$RUN/web.log")"
  sleep 0.1
done
[ -n "$PAGE_URL" ] || die "the page server did not start: see $RUN/web.log"
step "starting the agent worker (python -m agent start)"
cat <<MSG

  The agent registers with ws://127.0.0.1:7880 as "${AGENT_NAME:-voice-agent}".
  Open $PAGE_URL in a browser and press Start to talk to it, or,
  from another terminal:
    uv run python -m agent call --say "What a lovely day it is"   # speaks into a room, prints both transcripts
  livekit-server log: .run/livekit-server.log

MSG
uv run python -m agent start
