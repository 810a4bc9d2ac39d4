#!/usr/bin/env bash
# The whole local stack: livekit-server, the local gateway (cloud STT descriptors, offline), the
# browser page + token endpoint, and the agent worker on the embedded local defaults. One readable log line per event (LOG_FORMAT=json for
# JSON). Ctrl+C (or closing the terminal) stops everything within a few seconds.
#
# The worker runs as `python -m agent dev`: a save in agent/ or .env starts a new worker with it
# (docs/dev-loop.md). `scripts/up.sh --start` (or WORKER_MODE=start) runs `start`: no reload.
set -euo pipefail
# Started in the background by a script, bash ignores SIGINT here, and a signal ignored on entry
# cannot be trapped: start again with it restored, so that `kill -INT` stops the stack too.
if [ -z "${UP_SIGINT_RESTORED:-}" ] && env --default-signal=INT true 2>/dev/null; then
  UP_SIGINT_RESTORED=1 exec env --default-signal=INT bash "$0" "$@"
fi
WORKER_MODE="${WORKER_MODE:-dev}"
[ "${1:-}" = --start ] && WORKER_MODE=start
[[ "$WORKER_MODE" =~ ^(dev|start)$ ]] \
  || { echo "error: WORKER_MODE=$WORKER_MODE: use dev or start" >&2; exit 2; }
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example"; }
PYTHON="$ROOT/.venv/bin/python"  # not `uv run`: one process per service, so signals reach it
# LIVEKIT_PORT moves the livekit-server started here: the agent, the page and `agent call`
# follow it (else they would read .env's ws://127.0.0.1:7880); a LIVEKIT_URL set in the
# environment still wins
if [ -n "${LIVEKIT_PORT:-}" ] && [ -z "${LIVEKIT_URL:-}" ]; then
  export LIVEKIT_URL="ws://127.0.0.1:$LIVEKIT_PORT"
fi

# Each service runs in its own process group (setsid), and Ctrl+C reaches only this script,
# which stops them in order: a polite SIGTERM to each service, which closes its own children
# (the worker its job processes: killed under it, it would log them as crashed), then SIGKILL
# for whatever is left of its group after GRACE seconds.
GRACE=2
SERVICES=()
service() { setsid "$@" & SERVICES+=($!); }
stop_all() {
  # once: a second signal while stopping (Ctrl+C again, or `timeout` passing on a TERM) must
  # not end this script before the services it started
  trap - EXIT; trap '' INT TERM HUP
  # a server still starting has no pid file yet: let its starter finish (10 s at most) first
  [ -n "${SERVER_STARTER:-}" ] && { wait "$SERVER_STARTER" 2>/dev/null || true; }
  bash scripts/livekit-server.sh stop &  # in parallel: it has its own 2 s grace
  for pid in "${SERVICES[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq $((GRACE * 10))); do
    alive=0
    for pid in "${SERVICES[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${SERVICES[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait
  echo "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM HUP  # so that Ctrl+C or a closed terminal still runs the EXIT trap

# The services start at once, and up.sh waits for them afterwards: each spends its first
# seconds importing and loading models, which the others need not wait for.
bash scripts/livekit-server.sh start & SERVER_STARTER=$!

# wait_for_line LOG PID SED-EXPRESSION WHAT: the first match of a service's startup line
wait_for_line() {
  local found=""
  for _ in $(seq 300); do
    found="$(sed -n "$3" "$1")"
    [ -n "$found" ] && { echo "$found"; return; }
    kill -0 "$2" 2>/dev/null || die "$4 stopped: $(tail -n 1 "$1")"
    sleep 0.1
  done
  die "$4 did not start: see $1"
}

GATEWAY_PORT="${GATEWAY_PORT:-8089}"
step "starting the local gateway (python -m agent gateway; log: $RUN_SHOWN/gateway.log)"
service "$PYTHON" -m agent gateway --port "$GATEWAY_PORT" >"$RUN/gateway.log" 2>&1
GATEWAY_PID=${SERVICES[-1]}
GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"  # what it prints once it listens
# The agent and the page reach LiveKit Inference there, so the cloud STT models (the page's
# Cartesia, Deepgram, AssemblyAI... choices) run offline; an address set in .env or the
# environment wins. The gateway serves STT only: LLM and TTS stay local (agent/catalog.py).
if [ -z "${LIVEKIT_INFERENCE_URL:-}" ] && ! grep -q '^LIVEKIT_INFERENCE_URL=.' .env; then
  export LIVEKIT_INFERENCE_URL="$GATEWAY_URL/v1"
fi

step "starting the page and its token endpoint (python -m agent web; log: $RUN_SHOWN/web.log)"
service "$PYTHON" -m agent web >"$RUN/web.log" 2>&1
WEB_PID=${SERVICES[-1]}
step "starting the agent worker (python -m agent $WORKER_MODE)"
service "$PYTHON" -m agent "$WORKER_MODE"
WORKER_PID=${SERVICES[-1]}

wait "$SERVER_STARTER" || exit 1  # it said why
# its first line says where the page is (WEB_HOST/WEB_PORT in .env)
PAGE_URL="$(wait_for_line "$RUN/web.log" "$WEB_PID" 's/^page on \([^ ]*\).*/\1/p' "the page server")"
wait_for_line "$RUN/gateway.log" "$GATEWAY_PID" 's/^gateway on \([^ ]*\).*/\1/p' "the gateway" >/dev/null
RELOAD_NOTE="Edit agent/ or .env and save: the next call runs the new code."
[ "$WORKER_MODE" = start ] && RELOAD_NOTE="(--start: a change to agent/ needs a restart)"
cat <<MSG

  The agent registers with ws://127.0.0.1:${LIVEKIT_PORT:-7880} as "${AGENT_NAME:-voice-agent}".
  Open $PAGE_URL in a browser and press Start to talk to it, or,
  from another terminal:
    ${LIVEKIT_PORT:+LIVEKIT_URL=$LIVEKIT_URL }uv run python -m agent call --say "What a lovely day it is"   # speaks into a room, prints both transcripts
  $RELOAD_NOTE
  Cloud STT models picked on the page run offline through the local gateway at
  ${LIVEKIT_INFERENCE_URL:-$GATEWAY_URL/v1} (Moonshine inside; the page marks where each runs).
  logs: $RUN_SHOWN/livekit-server.log, gateway.log, web.log; the worker's are here.
  Ctrl+C stops everything.

MSG
set +e
wait "$WORKER_PID"  # returns when the worker exits by itself (e.g. a bad setting) or on Ctrl+C
exit $?
