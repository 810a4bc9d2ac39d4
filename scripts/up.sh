#!/usr/bin/env bash
# The whole local stack: livekit-server, the browser page + token endpoint, and the agent
# worker on the embedded local defaults. One readable log line per event (LOG_FORMAT=json for
# JSON). Ctrl+C (or closing the terminal) stops everything within a few seconds.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example"; }
PYTHON="$ROOT/.venv/bin/python"  # not `uv run`: one process per service, so signals reach it

# Each service runs in its own process group (setsid), so stopping it stops its children too
# (job processes, inference runners), and Ctrl+C reaches only this script, which stops them in
# order: a polite SIGTERM, then SIGKILL for whatever still runs after GRACE seconds.
GRACE=2
SERVICES=()
service() { setsid "$@" & SERVICES+=($!); }
stop_all() {
  trap - EXIT INT TERM HUP
  bash scripts/livekit-server.sh stop &  # in parallel: it has its own 2 s grace
  for pid in "${SERVICES[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq $((GRACE * 10))); do
    alive=0
    for pid in "${SERVICES[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${SERVICES[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait
  echo "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM HUP  # so that Ctrl+C or a closed terminal still runs the EXIT trap

bash scripts/livekit-server.sh start
step "starting the page and its token endpoint (python -m agent web; log: .run/web.log)"
service "$PYTHON" -m agent web >"$RUN/web.log" 2>&1
WEB_PID=${SERVICES[-1]}
for _ in $(seq 300); do  # its first line says where the page is (WEB_HOST/WEB_PORT in .env)
  PAGE_URL="$(sed -n 's/^page on \([^ ]*\).*/\1/p' "$RUN/web.log")"
  [ -n "$PAGE_URL" ] && break
  kill -0 "$WEB_PID" 2>/dev/null || die "the page server stopped: $(tail -n 1 "$RUN/web.log")"
  sleep 0.1
done
[ -n "$PAGE_URL" ] || die "the page server did not start: see $RUN/web.log"
step "starting the agent worker (python -m agent start)"
cat <<MSG

  The agent registers with ws://127.0.0.1:${LIVEKIT_PORT:-7880} as "${AGENT_NAME:-voice-agent}".
  Open $PAGE_URL in a browser and press Start to talk to it, or,
  from another terminal:
    uv run python -m agent call --say "What a lovely day it is"   # speaks into a room, prints both transcripts
  logs: .run/livekit-server.log, .run/web.log; the worker's are below. Ctrl+C stops everything.

MSG
service "$PYTHON" -m agent start
WORKER_PID=${SERVICES[-1]}
set +e
wait "$WORKER_PID"  # returns when the worker exits by itself (e.g. a bad setting) or on Ctrl+C
exit $?
