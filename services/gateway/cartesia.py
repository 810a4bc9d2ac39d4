"""Cartesia's STT API as its official clients speak it: livekit-plugins-cartesia, the `cartesia`
SDK (2.x and 4.x) and the OpenAI SDK. Keys, access tokens and Cartesia-Version: gateway/auth.py.

  GET  /                      status ({"ok": true, "version": ...}), what `client.api_status`
                              and the SDKs' health checks read
  POST /access-token          a short-lived token with grants (`client.auth.access_token`)
  GET  /stt/websocket         streaming, finalized by the client: ink-whisper and ink-2
                              (text commands `finalize`, `close`/`done`)
  GET  /stt/turns/websocket   streaming with turn events: ink-2 (`cartesia.STT()`'s English
                              default; `turn.start`, `turn.update`, `turn.end`)
  POST /stt, /audio/transcriptions   batch files (gateway/batch.py)
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from livekit.agents import utils

from agent import catalog, config
from agent.errors import ConfigError

from .auth import API_VERSIONS, CartesiaError, Keys, api_version, token_request
from .engine import Transcriber, Transcript, local_stt
from .limits import messages
from .sessions import GATEWAY, Gateway, SessionRecord
from .validation import BadRequestError, check_audio_format, validate

logger = logging.getLogger("services.gateway.cartesia")

# dated snapshots Cartesia lists under a model's family name
MODEL_ALIASES = {"ink-whisper-2025-06-04": "ink-whisper"}


@dataclass(frozen=True)
class StreamRoute:
    models: tuple[str, ...]  # what the route serves
    # the catalog entry whose options are the route's query parameters (with their ranges)
    options_from: str


STREAM_ROUTES = {
    "/stt/websocket": StreamRoute(("ink-whisper", "ink-2"), "cartesia/ink-whisper"),
    "/stt/turns/websocket": StreamRoute(("ink-2",), "cartesia/ink-2"),
}


def request_id() -> str:
    return utils.shortuuid("cartesia_")


def invalid(message: str) -> CartesiaError:
    return CartesiaError(400, "invalid_request", "Invalid request", message)


def model_id(query_or_form: Any, route: str, served: tuple[str, ...]) -> str:
    """The model a request names, checked against what `route` serves."""
    asked = query_or_form.get("model") or ""
    model = MODEL_ALIASES.get(asked, asked)
    if model not in served:
        elsewhere = [r for r, spec in STREAM_ROUTES.items() if model in spec.models]
        hint = f" ({model} is served on {', '.join(elsewhere)})" if elsewhere else ""
        raise invalid(f"model {asked!r} is not served on {route}: use {' or '.join(served)}{hint}")
    return model


def query_options(query: Any, catalog_id: str) -> dict[str, Any]:
    """The provider options in a websocket URL, typed as the catalog entry declares them."""
    spec = catalog.MODELS[("stt", catalog_id)].options
    options: dict[str, Any] = {}
    for name, option in spec.items():
        values = query.getall(name, [])
        if not values:
            continue
        if option.type is str:
            options[name] = values if len(values) > 1 else values[0]
            continue
        try:
            options[name] = option.type(values[0])
        except ValueError:
            raise invalid(f"{name} must be a number, not {values[0]!r}") from None
    return options


def check_options(catalog_id: str, options: dict[str, Any], source: str) -> None:
    try:
        config.check_options(config.parse("stt", catalog_id), options, source=source)
    except ConfigError as e:
        raise invalid(str(e)) from None


# -- status and access tokens --------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    """Cartesia's `GET /`: the SDKs validate `ok` and `version`."""
    sessions = len(request.app[GATEWAY].sessions)
    return web.json_response({"ok": True, "version": API_VERSIONS[-1], "sessions": sessions})


async def access_token(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rid = request_id()
    try:
        api_version(request)
        caller = Keys(gw.cartesia_key).authenticate(request)
        if caller.via != "api_key":
            raise CartesiaError(
                403, "forbidden", "Forbidden", "access tokens are made with the API key itself"
            )
        try:
            body = await request.json()
        except ValueError:
            raise invalid('the body must be JSON, e.g. {"grants": {"stt": true}}') from None
        grants, expires_in = token_request(body)
    except CartesiaError as e:
        logger.info("access token refused (%d): %.200s", e.status, e.message)
        return e.response(rid)
    token = Keys(gw.cartesia_key).issue(grants, expires_in)
    logger.info("access token issued: grants=%s, expires in %d s", grants, expires_in)
    return web.json_response({"token": token})


# -- streaming -----------------------------------------------------------------------------------


async def cartesia_stt(request: web.Request) -> web.StreamResponse:
    return await stream(request, "/stt/websocket", CartesiaSession)


async def cartesia_turns(request: web.Request) -> web.StreamResponse:
    return await stream(request, "/stt/turns/websocket", TurnsSession)


async def stream(request: web.Request, route: str, session_type: type) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    rid = request_id()
    spec = STREAM_ROUTES[route]
    query = request.query
    model = query.get("model", "")
    language = query.get("language") or "en"
    try:
        version = api_version(request)
        caller = Keys(gw.cartesia_key).authenticate(request)
        model = model_id(query, route, spec.models)
        options = query_options(query, spec.options_from)
        check_options(spec.options_from, options, source="query")
        validate(f"cartesia/{model}", language, {}, source="query")
        rate = check_audio_format(query.get("sample_rate"), query.get("encoding"))
        local_stt(language)  # a language no local engine speaks is refused before the upgrade
    except BadRequestError as e:
        return refuse(gw, rid, model, language, invalid(str(e)))
    except CartesiaError as e:
        return refuse(gw, rid, model, language, e)

    ws = web.WebSocketResponse()
    ws.headers["X-Request-Id"] = rid
    await ws.prepare(request)
    record = gw.new_record(
        "cartesia",
        rid,
        model=model,
        language=language,
        options=options,
        sample_rate=rate,
        encoding=query["encoding"],
        subject=caller.via,
        api_version=version,
    )
    record.settings = {"model": model, "language": language, "options": options}
    session = session_type(gw, ws, record)
    session.transcriber = Transcriber(language, rate, query["encoding"], options, session.send_one)
    try:
        await session.run()
    finally:
        await session.transcriber.aclose()
        await ws.close()
        gw.closed(record)
    return ws


def refuse(gw: Gateway, rid: str, model: str, language: str, e: CartesiaError) -> web.Response:
    logger.info("cartesia session refused (%d): %s", e.status, e.message)
    gw.new_record("cartesia", rid, model=model, language=language, error=e.message)
    return e.response(rid)


@dataclass
class CartesiaSession:
    """One /stt/websocket: binary audio and text commands in, JSON transcripts out."""

    gw: Gateway
    ws: web.WebSocketResponse
    record: SessionRecord
    transcriber: Transcriber | None = None
    last: float = 0.0  # the plugin lays transcripts end to end: durations run from the last one

    async def run(self) -> None:
        async for msg in messages(self.ws, self.gw.limits.ws_idle_timeout, self.idle):
            if msg.type == WSMsgType.BINARY:
                await self.audio(msg.data)
            elif msg.type != WSMsgType.TEXT:
                continue
            elif msg.data == "finalize":
                await self.transcriber.finalize()
                await self.send({"type": "flush_done"})
            elif msg.data in ("close", "done"):
                await self.transcriber.finalize(reopen=False)
                self.record.finalized = True
                await self.send({"type": "done"})
                return
            else:
                await self.error(
                    "Unknown command",
                    f"unknown text message {msg.data[:40]!r}: send audio as binary frames, "
                    "'finalize' or 'close'",
                )

    async def audio(self, data: bytes) -> None:
        await self.transcriber.push(data)
        self.record.audio_seconds = round(self.transcriber.position, 3)

    async def send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:  # the client may hang up without waiting for `done`
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(json.dumps({**msg, "request_id": self.record.id}))

    async def error(
        self, title: str, message: str, status: int = 400, code: str = "invalid_request"
    ) -> None:
        """Cartesia's websocket error event (the LiveKit plugin reads `code`, SDK 4.x
        `status_code`); the session goes on."""
        await self.send(
            {
                "type": "error",
                "status_code": status,
                "code": status,
                "error_code": code,
                "title": title,
                "message": message,
            }
        )

    async def idle(self) -> None:
        """Cartesia closes a websocket idle for 5 minutes (its docs on timeouts); so do we,
        after GATEWAY_WS_IDLE_TIMEOUT, saying why first."""
        self.record.error = "idle timeout"
        timeout = self.gw.limits.ws_idle_timeout
        await self.error(
            "Idle timeout",
            f"no message for {timeout:.0f} s: the connection is closed (GATEWAY_WS_IDLE_TIMEOUT)",
            status=408,
            code="idle_timeout",
        )

    async def send_one(self, t: Transcript) -> None:
        self.gw.note(self.record, t)
        await self.send(
            {
                "type": "transcript",
                "is_final": t.is_final,
                "text": t.text,
                "duration": round(max(0.0, t.end - self.last), 3),
                "language": self.record.language,
                "words": t.words(),
            }
        )
        self.last = max(self.last, t.end)


@dataclass
class TurnsSession(CartesiaSession):
    """One /stt/turns/websocket (ink-2): the server ends turns by itself.

    A turn opens with `turn.start` at its first words, grows with `turn.update` (the whole turn
    so far) and closes with `turn.end` when the utterance ends (max silence, see engine.py).
    Text commands are JSON: `{"type": "close"}` ends the session after the last turn,
    `{"type": "config", "turn": {...}}` changes the turn thresholds (checked and recorded;
    the local engine endpoints on silence, it has no turn model)."""

    speaking: bool = False

    async def run(self) -> None:
        await self.send({"type": "connected"})
        async for msg in messages(self.ws, self.gw.limits.ws_idle_timeout, self.idle):
            if msg.type == WSMsgType.BINARY:
                await self.audio(msg.data)
                continue
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                command = json.loads(msg.data)
            except ValueError:
                command = None
            kind = command.get("type") if isinstance(command, dict) else None
            if kind == "close":
                await self.transcriber.finalize(reopen=False)
                self.record.finalized = True
                return  # the server closes: that is the client's end of stream
            if kind == "config":
                await self.configure(command)
            else:
                await self.error(
                    "Unknown command",
                    f"unknown text message {msg.data[:40]!r}: send audio as binary frames, "
                    '{"type": "close"} or {"type": "config", "turn": {...}}',
                )

    async def configure(self, command: dict[str, Any]) -> None:
        turn = command.get("turn") or {}
        options = {f"turn_{k}": v for k, v in turn.items()} if isinstance(turn, dict) else None
        try:
            if options is None:
                raise invalid('"turn" must be an object, e.g. {"end_threshold": 0.3}')
            check_options("cartesia/ink-2", options, source="config.turn")
        except CartesiaError as e:
            await self.error("Invalid config", e.message)
            return
        self.record.updates.append(command)
        self.record.settings["options"] = {**self.record.settings["options"], **options}

    async def send_one(self, t: Transcript) -> None:
        self.gw.note(self.record, t)
        if not self.speaking:
            self.speaking = True
            await self.send({"type": "turn.start"})
        await self.send({"type": "turn.end" if t.is_final else "turn.update", "transcript": t.text})
        if t.is_final:
            self.speaking = False
