# Shared by the scripts: paths and a step printer. Source it, do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools/bin"          # livekit-server lands here
RUN="$ROOT/.run"                  # pid and log files of what scripts/up.sh starts
export PATH="$TOOLS:$HOME/.local/bin:$PATH"
mkdir -p "$TOOLS" "$RUN"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
