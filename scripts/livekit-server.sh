#!/usr/bin/env bash
# Install (once) and run a real livekit-server in dev mode on loopback (keys devkey/secret).
#   scripts/livekit-server.sh install   build .tools/bin/livekit-server from the Go module proxy
#   scripts/livekit-server.sh start     start it in the background (log: .run/livekit-server.log,
#                                       .run/port-<LIVEKIT_PORT>/ when it is set)
#   scripts/livekit-server.sh stop
set -euo pipefail
source "$(dirname "$0")/common.sh"
VERSION=v1.13.5
PORT="${LIVEKIT_PORT:-7880}"
# The server dispatches a call only to a worker whose reported load is under target_load
# (default 0.7). A worker that answers "busy" (BUSY_ANSWER, the default) reports at most 0.5,
# under either value (agent/capacity.py FULL_LOAD); with BUSY_ANSWER=false it reports
# calls / MAX_CALLS, full at 1.0, so 1.0 here keeps every one of its slots dispatchable.
AGENTS_CONFIG="agents: {target_load: 1.0}"
# info, not --dev's debug: at debug the server logs every participant's refresh token (a live
# JWT). The keys are given, not left to --dev, whose placeholder-keys line logs the secret;
# through the environment, so that they are not in the process list either. Dev keys unless
# LIVEKIT_API_KEY/SECRET are exported.
LOG_CONFIG="logging: {level: info}"
export LIVEKIT_KEYS="${LIVEKIT_API_KEY:-devkey}: ${LIVEKIT_API_SECRET:-secret}"

install() {
  if command -v livekit-server >/dev/null; then return; fi
  command -v go >/dev/null || die "livekit-server needs Go >= 1.23 to build: install it (https://go.dev/dl or 'apt-get install golang'), or put a livekit-server binary on PATH"
  step "building livekit-server $VERSION with Go (first time only, a few minutes)"
  GOBIN="$TOOLS" go install -v "github.com/livekit/livekit-server/cmd/server@$VERSION" 2>&1 \
    | awk '{ n++; if (n % 25 == 0) printf "  ... %d packages built\n", n; fflush() }'
  mv "$TOOLS/server" "$TOOLS/livekit-server"
  echo "  installed $TOOLS/livekit-server"
}

running() { curl -fsS "http://127.0.0.1:$PORT" >/dev/null 2>&1; }

start() {
  install
  if running; then echo "livekit-server already answers on 127.0.0.1:$PORT"; return; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT is in use by another program: stop it, or set LIVEKIT_PORT"
  fi
  step "starting livekit-server on ws://127.0.0.1:$PORT (dev keys devkey/secret)"
  # rtc ports follow LiveKit's own layout (7880 signal, 7881 TCP, 7882 UDP) from LIVEKIT_PORT;
  # the log is appended to: a restart after a crash keeps what led to it
  nohup livekit-server --dev --bind 127.0.0.1 --node-ip 127.0.0.1 \
    --config-body "$(printf 'port: %s\nrtc:\n  tcp_port: %s\n  udp_port: %s\n%s\n%s\n' \
      "$PORT" $((PORT + 1)) $((PORT + 2)) "$AGENTS_CONFIG" "$LOG_CONFIG")" \
    >>"$RUN/livekit-server.log" 2>&1 &
  echo $! >"$RUN/livekit-server.pid"
  for _ in $(seq 100); do running && return; sleep 0.1; done
  die "livekit-server did not start: see $RUN/livekit-server.log"
}

stop() {  # SIGTERM, then SIGKILL after 2 s: a dev server need not wait for its rooms to drain
  local pid
  pid="$(cat "$RUN/livekit-server.pid" 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/livekit-server.pid"
}

"${1:-start}"
