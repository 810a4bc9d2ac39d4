# Shared by the scripts: paths and a step printer. Source it, do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools/bin"          # livekit-server lands here
# pid and log files of what scripts/up.sh starts. A stack moved by LIVEKIT_PORT keeps its own
# (.run/port-<port>/): two stacks in one checkout never read each other's pid file or log.
RUN="$ROOT/.run${LIVEKIT_PORT:+/port-$LIVEKIT_PORT}"
RUN_SHOWN="${RUN#"$ROOT"/}"        # as the scripts print it
export PATH="$TOOLS:$HOME/.local/bin:$PATH"
mkdir -p "$TOOLS" "$RUN"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# changed STAMP PATH...: true unless STAMP holds the hash of PATH... (files, or directories of
# them) as `stamp` left it after the step they feed. So a warm start skips what is up to date.
changed() { [ "$(cat "$1" 2>/dev/null)" != "$(hash_of "${@:2}")" ]; }
stamp() { hash_of "${@:2}" >"$1"; }
hash_of() { find "$@" -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64; }
