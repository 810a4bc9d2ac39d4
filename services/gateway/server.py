"""A local stand-in for LiveKit Inference STT and Cartesia's STT API, on one port.

`python -m agent gateway` serves the wire protocols of the agent's cloud STT and of Cartesia's
official clients, so the production setting `STT=cartesia/ink-whisper:en` (or `ink-2`) and code
written for Cartesia or OpenAI's SDK run offline, unchanged:

  /v1/stt                   LiveKit Inference (what `inference.STT` and "cartesia/ink-whisper:en"
                            reach with LIVEKIT_INFERENCE_URL=http://HOST:PORT/v1)
  /stt/websocket            Cartesia streaming, ink-whisper and ink-2 (gateway/cartesia.py)
  /stt/turns/websocket      Cartesia ink-2 with turn events (`cartesia.STT()` for English)
  POST /stt                 Cartesia batch files; POST /audio/transcriptions, the OpenAI-
                            compatible twin (gateway/batch.py)
  POST /access-token        Cartesia access tokens (gateway/auth.py: keys, tokens, versions)
  GET /                     Cartesia's status object ({"ok": true, "version": ...})
  GET /sessions             what the last 1000 sessions asked for and heard, as JSON (no
                            secrets); it holds what callers said, so it needs the Cartesia key

Every route answers bad input with its protocol's error (Cartesia's error object, the
Inference websocket's error event) and a 4xx, and logs one line. Its limits (upload size,
audio duration, batch work at once, idle websockets) are settings: gateway/limits.py.

The session's language picks the STT plugin a call in that language gets (gateway/engine.py,
`local/auto`), and the session streams through that plugin's own `stream()`: English on
Moonshine tiny-en, the other 99 languages of Whisper (which are Cartesia ink-whisper's) on the
multilingual Whisper base, in that language; files with English word timestamps on Whisper
tiny.en. A language no local engine speaks is refused, never transcribed as another.

Cartesia's `min_volume` and `max_silence_duration_secs` are honoured as the plugins' own
`min_volume` and `min_silence` (engine.PLUGIN_OPTIONS); the other providers' options are
validated against agent/catalog.py and recorded, not applied.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web

from agent import config, logs
from agent.errors import ServiceError
from agent.plugins.moonshine import load_transcriber

from .auth import CartesiaError, Keys
from .batch import transcribe
from .cartesia import access_token, cartesia_stt, cartesia_turns, request_id, status
from .inference import inference_stt
from .limits import Limits
from .sessions import GATEWAY, Gateway

DEFAULT_PORT = 8089
DEFAULT_CARTESIA_KEY = "local-dev-key"


async def list_sessions(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    try:
        if Keys(gw.cartesia_key).authenticate(request).via != "api_key":
            raise CartesiaError(403, "forbidden", "Forbidden", "/sessions needs the API key itself")
    except CartesiaError as e:
        return e.response(request_id())
    return web.json_response([r.to_json() for r in gw.sessions])


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application(client_max_size=gateway.limits.max_upload_bytes)
    app[GATEWAY] = gateway
    app.router.add_get("/v1/stt", inference_stt)
    app.router.add_get("/stt", inference_stt)  # LIVEKIT_INFERENCE_URL given without the /v1
    app.router.add_get("/stt/websocket", cartesia_stt)
    app.router.add_get("/stt/turns/websocket", cartesia_turns)
    app.router.add_post("/stt", transcribe)
    app.router.add_post("/audio/transcriptions", transcribe)
    app.router.add_post("/access-token", access_token)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_get("/", status)
    return app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent gateway",
        description="Serve LiveKit Inference STT (/v1/stt) and Cartesia's STT API (streaming, "
        "batch, access tokens) locally, transcribed by local engines.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--cartesia-key",
        help="the Cartesia API key clients must send (X-API-Key or Bearer; default: "
        f"$CARTESIA_API_KEY or {DEFAULT_CARTESIA_KEY})",
    )
    args = parser.parse_args(argv)
    settings = config.Settings.from_env()  # LIVEKIT_API_KEY/SECRET sign the agent's tokens
    gateway = Gateway(
        api_key=settings.livekit_api_key or "devkey",
        api_secret=settings.livekit_api_secret.get_secret_value() or "secret",
        cartesia_key=args.cartesia_key
        or settings.cartesia_api_key.get_secret_value()
        or DEFAULT_CARTESIA_KEY,
        limits=Limits.from_settings(settings),
    )
    logs.setup()
    load_transcriber()  # the first session should not wait for the model
    base = f"http://{args.host}:{args.port}"
    banner = (
        f"gateway on {base} (LiveKit API key {gateway.api_key}); point the agent at it with\n"
        f"  LIVEKIT_INFERENCE_URL={base}/v1\n  CARTESIA_BASE_URL={base}\n"
        # the cartesia SDK 2.x opens ws:// (not wss://) only for a URL containing "localhost"
        f"cartesia SDK 2.x: base_url={base.replace('127.0.0.1', 'localhost')}"
    )
    try:
        # no access log: a browser-style client may put its Cartesia key in the query string
        web.run_app(
            make_app(gateway),
            host=args.host,
            port=args.port,
            access_log=None,
            print=lambda _: print(banner, flush=True),
        )
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ServiceError(
            f"cannot listen on {args.host}:{args.port} ({reason}): choose another --port"
        ) from None
