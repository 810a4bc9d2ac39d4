#!/usr/bin/env bash
# LiveKit's distributed deployment on one machine: Redis, two livekit-server nodes sharing it,
# the redispatcher (gives a call its agent back when a worker dies), two agent workers (one
# registered with each node) and the browser page. Ctrl+C stops all of it.
#   CLUSTER_PORT   first port of the block it uses (default 7900; see the table it prints)
#   WORKERS        agent workers (default 2), registered with the nodes in turn
#   MAX_CALLS      calls per worker (default 4): the load each worker reports to LiveKit
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
bash scripts/setup.sh
command -v redis-server >/dev/null || die "redis-server is missing: apt-get install redis-server"
# the keys for `python -m agent call` from another terminal, as scripts/up.sh does
[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example"; }

BASE="${CLUSTER_PORT:-7900}"
WORKERS="${WORKERS:-2}"
export MAX_CALLS="${MAX_CALLS:-4}"
export LIVEKIT_API_KEY="${LIVEKIT_API_KEY:-devkey}" LIVEKIT_API_SECRET="${LIVEKIT_API_SECRET:-secret}"
REDIS_PORT=$BASE REDISPATCH_PORT=$((BASE + 1)) WEB_PORT=$((BASE + 2))
REDISPATCH_URL="http://127.0.0.1:$REDISPATCH_PORT"
node_port() { echo $((BASE + 10 * $1)); }  # node N: signal N0, WebRTC TCP N1, WebRTC UDP N2
LOGS="$ROOT/.run/cluster"  # whatever LIVEKIT_PORT says: the cluster picks its own ports
PY="$ROOT/.venv/bin/python"  # not `uv run`: a kill -9 must reach the worker itself
mkdir -p "$LOGS"

for port in $REDIS_PORT $REDISPATCH_PORT $WEB_PORT $(node_port 1) $(node_port 2); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use: stop what uses it, or pick another block with CLUSTER_PORT"
  fi
done

PIDS=()
declare -A NAME  # pid -> what it is
# Each part runs in its own process group (setsid), as in scripts/up.sh: Ctrl+C reaches only
# this script, and each part gets one SIGTERM from it. (A worker that got the terminal's SIGINT
# and then the SIGTERM took the second signal as "force exit" and left a closing call's process
# behind, orphaned.)
launch() {  # launch WHAT LOG COMMAND...: start in the background, remember it
  local what=$1 log=$2; shift 2
  setsid "$@" >"$log" 2>&1 &
  PIDS+=($!) NAME[$!]=$what LAST=$!
}
cleanup() {
  # once: a second signal while stopping (Ctrl+C again, or `timeout` passing on a TERM) must
  # not end this script before the services it started
  trap - EXIT; trap '' INT TERM HUP
  step "stopping the cluster"
  kill "${PIDS[@]}" 2>/dev/null || true
  for _ in $(seq 100); do  # 10 s for a clean goodbye, then no mercy
    alive=0; for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done  # and their children
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP  # Ctrl+C or a closed terminal still runs the EXIT trap

wait_log() {  # wait_log PID FILE TEXT WHAT
  for _ in $(seq 1200); do
    grep -q "$3" "$2" 2>/dev/null && return
    kill -0 "$1" 2>/dev/null || die "$4 stopped: $(tail -n 3 "$2")"
    sleep 0.1
  done
  die "$4 did not start: see $2"
}

step "starting Redis on 127.0.0.1:$REDIS_PORT (the nodes' shared state and message bus)"
launch redis-server "$LOGS/redis.log" \
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no
wait_log $LAST "$LOGS/redis.log" "Ready to accept connections" redis-server

step "starting the redispatcher on $REDISPATCH_URL/ (the nodes' webhook)"
LIVEKIT_URL="ws://127.0.0.1:$(node_port 1)" launch redispatcher "$LOGS/redispatch.log" \
  "$PY" -m agent redispatch --port "$REDISPATCH_PORT"
wait_log $LAST "$LOGS/redispatch.log" "redispatch webhook on" redispatcher

for n in 1 2; do
  port=$(node_port "$n")
  step "starting livekit-server node $n on ws://127.0.0.1:$port (WebRTC TCP $((port + 1)), UDP $((port + 2)))"
  # The same file serves every node of a real cluster; only ports and node_ip differ here
  # because both nodes share one address (see docs/deployment.md).
  cat >"$LOGS/node$n.yaml" <<YAML
port: $port
bind_addresses: [127.0.0.1]
rtc:
  tcp_port: $((port + 1))
  udp_port: $((port + 2))
  node_ip: 127.0.0.1
redis:
  address: 127.0.0.1:$REDIS_PORT
keys:
  $LIVEKIT_API_KEY: $LIVEKIT_API_SECRET
webhook:
  api_key: $LIVEKIT_API_KEY
  urls: [$REDISPATCH_URL/]
agents:
  target_load: 1.0   # for BUSY_ANSWER=false, whose load is full at 1.0, not 0.7 (busy: <= 0.5)
logging:
  level: info
YAML
  launch "livekit-server node $n" "$LOGS/node$n.log" livekit-server --config "$LOGS/node$n.yaml"
  NODE_PIDS[$n]=$LAST
  wait_log $LAST "$LOGS/node$n.log" "starting LiveKit server" "livekit-server node $n"
done

for w in $(seq "$WORKERS"); do
  n=$(((w - 1) % 2 + 1))
  step "starting agent worker $w (python -m agent start), registered with node $n"
  LIVEKIT_URL="ws://127.0.0.1:$(node_port "$n")" AGENT_HTTP_PORT=$((BASE + 30 + w)) \
    launch "agent worker $w" "$LOGS/worker$w.log" "$PY" -m agent start
  WORKER_PIDS[$w]=$LAST
done
for w in $(seq "$WORKERS"); do  # they load their models side by side
  wait_log "${WORKER_PIDS[$w]}" "$LOGS/worker$w.log" "registered worker" "agent worker $w"
done

LIVEKIT_URL="ws://127.0.0.1:$(node_port 1)" WEB_PORT=$WEB_PORT \
  launch "page server" "$LOGS/web.log" "$PY" -m agent web
wait_log $LAST "$LOGS/web.log" "page on" "the page server"

cat <<MSG

  The cluster is up (logs in $LOGS/):
    redis            127.0.0.1:$REDIS_PORT
    node 1, node 2   ws://127.0.0.1:$(node_port 1)  ws://127.0.0.1:$(node_port 2)
    redispatcher     $REDISPATCH_URL/ (livekit-server's webhook)
    workers          $WORKERS x "${AGENT_NAME:-voice-agent}", $MAX_CALLS calls each
    page             $(sed -n 's/^page on \([^ ]*\).*/\1/p' "$LOGS/web.log")

  Call it from another terminal, through either node:
    LIVEKIT_URL=ws://127.0.0.1:$(node_port 2) uv run python -m agent call --say "Hello there"
  Kill a worker mid-call: its calls get an agent from another worker once livekit-server
  notices (~20 s; see $REDISPATCH_URL/redispatches):
$(for w in $(seq "$WORKERS"); do printf '    kill -9 %s    # worker %s\n' "${WORKER_PIDS[$w]}" "$w"; done)
  Stop node 2 (kill ${NODE_PIDS[2]}): its rooms end, node 1's calls go on (the page and the
  redispatcher talk to node 1, standing in for a load balancer). Ctrl+C stops everything.

MSG
# Keep running when a part stops (that is the point: kill a worker or a node and watch the
# calls carry on); say so once.
declare -A GONE
while sleep 1; do
  for pid in "${PIDS[@]}"; do
    if [ -z "${GONE[$pid]:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
      GONE[$pid]=1
      echo "$(date +%T) ${NAME[$pid]} (pid $pid) stopped"
    fi
  done
done
