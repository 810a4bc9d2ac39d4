"""Cartesia's STT websocket (`/stt/websocket`): what `cartesia.STT(model="ink-whisper")`
speaks with base_url / CARTESIA_BASE_URL pointing here."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from livekit.agents import utils

from agent import catalog

from .engine import Hypothesis, Recognizer
from .sessions import GATEWAY, Gateway, SessionRecord
from .validation import BadRequestError, check_audio_format, vad_settings, validate

logger = logging.getLogger("gateway.cartesia")

CARTESIA_MODEL = "ink-whisper"
CARTESIA_STT = "cartesia/ink-whisper"  # its catalog entry: languages and options
CARTESIA_OPTIONS = tuple(catalog.CARTESIA_STT_OPTIONS)  # also accepted as query parameters


def cartesia_error(
    status: int, code: str, title: str, message: str, request_id: str
) -> web.Response:
    """Cartesia's HTTP error object (api-errors: error_code, title, message, request_id)."""
    body = {"error_code": code, "title": title, "message": message, "request_id": request_id}
    return web.json_response(body, status=status)


async def cartesia_stt(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    request_id = utils.shortuuid("cartesia_")
    key = request.headers.get("X-API-Key") or request.query.get("api_key", "")
    if not key or not hmac.compare_digest(key.encode(), gw.cartesia_key.encode()):
        missing = not key
        return cartesia_error(
            401,
            "missing_api_key" if missing else "invalid_api_key",
            "Unauthorized",
            "Send your API key in the X-API-Key header" if missing else "Invalid API key",
            request_id,
        )
    query = request.query
    model, language = query.get("model", ""), query.get("language", "en")
    try:
        if model != CARTESIA_MODEL:
            raise BadRequestError(
                f"model {model!r} is not served on /stt/websocket here: use 'ink-whisper' "
                "(ink-2 uses /stt/turns/websocket, which the local gateway does not serve)"
            )
        options = {}
        for name in CARTESIA_OPTIONS:
            if name in query:
                try:
                    options[name] = float(query[name])
                except ValueError:
                    raise BadRequestError(f"{name} must be a number, not {query[name]!r}") from None
        validate(CARTESIA_STT, language, options, source="query")
        rate = check_audio_format(query.get("sample_rate"), query.get("encoding"))
    except BadRequestError as e:
        logger.info("cartesia session refused: %s", e)
        gw.new_record("cartesia", request_id, model=model, language=language, error=str(e))
        return cartesia_error(400, "invalid_request", "Invalid request", str(e), request_id)

    ws = web.WebSocketResponse()
    ws.headers["X-Request-Id"] = request_id
    await ws.prepare(request)
    record = gw.new_record(
        "cartesia",
        request_id,
        model=model,
        language=language,
        options=options,
        sample_rate=rate,
        encoding=query["encoding"],
    )
    record.settings = {"model": model, "language": language, "options": options}
    session = CartesiaSession(
        gw, ws, record, Recognizer(rate, query["encoding"], **vad_settings(options))
    )
    try:
        await session.run()
    finally:
        await session.recognizer.aclose()
        await ws.close()
        gw.closed(record)
    return ws


@dataclass
class CartesiaSession:
    """One /stt/websocket: binary audio and text commands in, JSON events out."""

    gw: Gateway
    ws: web.WebSocketResponse
    record: SessionRecord
    recognizer: Recognizer
    last: float = 0.0  # the plugin lays transcripts end to end: durations run from the last one

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                await self.send_transcripts(await self.recognizer.push(msg.data))
                self.record.audio_seconds = round(self.recognizer.position, 3)
            elif msg.type != WSMsgType.TEXT:
                continue
            elif msg.data == "finalize":
                await self.send_transcripts(await self.recognizer.finalize())
                await self.send({"type": "flush_done"})
            elif msg.data in ("close", "done"):
                await self.send_transcripts(await self.recognizer.finalize())
                self.record.finalized = True
                await self.send({"type": "done"})
                return
            else:  # Cartesia's websocket error event; the LiveKit plugin reads `code`
                await self.send(
                    {
                        "type": "error",
                        "done": True,
                        "status_code": 400,
                        "code": 400,
                        "error_code": "invalid_request",
                        "title": "Unknown command",
                        "message": f"unknown text message {msg.data[:40]!r}: send audio as "
                        "binary frames, 'finalize' or 'close'",
                    }
                )

    async def send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:  # the client may hang up without waiting for `done`
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(json.dumps({**msg, "request_id": self.record.id}))

    async def send_transcripts(self, results: list[Hypothesis]) -> None:
        for t in results:
            self.gw.note(self.record, t)
            await self.send(
                {
                    "type": "transcript",
                    "is_final": t.is_final,
                    "text": t.text,
                    "duration": round(t.position - self.last, 3),
                    "language": self.record.language,
                    "words": t.words(),
                }
            )
            self.last = t.position


async def cartesia_turns(request: web.Request) -> web.Response:
    return cartesia_error(
        400,
        "model_not_found",
        "Model not served locally",
        "the local gateway serves ink-whisper only (on /stt/websocket); use model='ink-whisper'",
        utils.shortuuid("cartesia_"),
    )
