"""LiveKit Inference's STT websocket (`/v1/stt`): what `inference.STT` and the descriptor string
`"cartesia/ink-whisper:en"` speak when LIVEKIT_INFERENCE_URL points here.

Every text message is a JSON object whose `type` names a handler; the fields each one reads are
checked against MESSAGE_FIELDS and SETTINGS_FIELDS before it runs. A message of the wrong shape
(`1`, `[]`, `"settings": "x"`, `"audio": 5`) gets the protocol's error event (`code` 400) and
ends the session, with one log line; so does a socket silent for GATEWAY_WS_IDLE_TIMEOUT."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import WSMsgType, web
from livekit import api
from livekit.agents import utils

from agent import catalog

from .engine import Transcriber, Transcript, local_stt
from .limits import messages
from .sessions import GATEWAY, Gateway, SessionRecord
from .validation import BadRequestError, check_audio_format, validate

logger = logging.getLogger("services.gateway.inference")


async def inference_stt(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    try:
        claims = api.TokenVerifier(gw.api_key, gw.api_secret).verify(token)
    except Exception:  # any malformed, expired or foreign token
        return web.json_response({"error": "invalid or expired access token"}, status=401)
    if not claims.inference or not claims.inference.perform:
        return web.json_response({"error": "token lacks the inference.perform grant"}, status=403)

    ws = web.WebSocketResponse()
    await ws.prepare(request)
    given = request.headers.get("X-LiveKit-Session-ID", "")
    # the client's session id names the session in our answers and logs: only a plain one
    plain = given.isascii() and given.isprintable() and len(given) <= 64
    request_id = given if given and plain else utils.shortuuid("stt_")
    record = gw.new_record("inference", request_id, subject=claims.identity)
    session = InferenceSession(gw, ws, record, query_model=request.query.get("model", ""))
    try:
        await session.run()
    finally:
        if session.transcriber is not None:
            await session.transcriber.aclose()
        await ws.close()
        gw.closed(session.record)
    return ws


@dataclass
class InferenceSession:
    """One /v1/stt websocket: JSON messages in, JSON messages out."""

    gw: Gateway
    ws: web.WebSocketResponse
    record: SessionRecord
    query_model: str = ""  # the model in the URL; session.create's takes precedence
    transcriber: Transcriber | None = None

    async def run(self) -> None:
        idle = self.gw.limits.ws_idle_timeout
        async for msg in messages(self.ws, idle, self.idle):
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                    raise BadRequestError(
                        f"a message is a JSON object with a 'type', not {msg.data[:40]!r}"
                    )
                handler = self.HANDLERS.get(data["type"])
                if handler is None:
                    logger.warning("%s: unknown message type %.40r", self.record.id, data["type"])
                    continue
                check_shape(data)
                if self.transcriber is None and handler is not InferenceSession.create:
                    raise BadRequestError(f"expected session.create first, not {data['type']!r}")
                if await handler(self, data):
                    return
            except (BadRequestError, ValueError, RecursionError) as e:  # bad JSON or base64
                message = str(e) or type(e).__name__
                logger.info("inference session %s refused: %.200s", self.record.id, message)
                self.record.error = message
                await self.send({"type": "error", "code": 400, "message": message})
                return

    async def idle(self) -> None:
        self.record.error = "idle timeout"
        await self.send(
            {
                "type": "error",
                "code": 408,
                "message": f"no message for {self.gw.limits.ws_idle_timeout:.0f} s: "
                "the session is closed (GATEWAY_WS_IDLE_TIMEOUT)",
            }
        )

    async def send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:  # the client may hang up right after session.close
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(json.dumps({**msg, "request_id": self.record.id}))

    async def send_one(self, t: Transcript) -> None:
        self.gw.note(self.record, t)
        await self.send(
            {
                "type": "final_transcript" if t.is_final else "interim_transcript",
                "transcript": t.text,
                "language": self.record.settings["language"] or "en",
                "start": round(t.start, 3),
                "duration": round(t.end - t.start, 3),
                "confidence": 1.0,
                "words": t.words(),
            }
        )

    # each handler returns True when the session is over

    async def create(self, data: dict[str, Any]) -> bool:
        settings = data.get("settings") or {}
        current = {
            "model": data.get("model") or self.query_model or "auto",
            "language": settings.get("language") or "",
            "options": dict(settings.get("extra") or {}),
        }
        encoding = settings.get("encoding") or "pcm_s16le"  # null, as absent: the default
        self.record.model, self.record.language = current["model"], current["language"]
        self.record.options, self.record.settings = current["options"], dict(current)
        self.record.encoding = encoding
        self.record.fallback = [
            m.get("model") for m in (data.get("fallback") or {}).get("models") or []
        ]
        self.record.sample_rate = rate = check_audio_format(
            16000 if settings.get("sample_rate") is None else settings["sample_rate"], encoding
        )
        _validate_inference(current)
        self.transcriber = Transcriber(
            current["language"] or "en", rate, encoding, current["options"], self.send_one
        )
        await self.send({"type": "session.created"})
        return False

    async def audio(self, data: dict[str, Any]) -> bool:
        audio = base64.b64decode(data.get("audio") or "", validate=True)
        await self.transcriber.push(audio)
        self.record.audio_seconds = round(self.transcriber.position, 3)
        return False

    async def update(self, data: dict[str, Any]) -> bool:
        update = data.get("settings") or {}
        self.record.updates.append(update)
        merged = dict(self.record.settings)
        # null, as absent, leaves a setting as it was
        merged.update({k: update[k] for k in ("model", "language") if update.get(k) is not None})
        merged["options"] = {**merged["options"], **(update.get("extra") or {})}
        _validate_inference(merged)
        language = merged["language"] or "en"
        old = self.transcriber
        same_engine = local_stt(language) == old.descriptor
        self.record.settings = merged
        if same_engine:
            old.configure(merged["options"])
            return False
        # another language: what was heard so far is final in the old one, then the new
        # language's engine takes over (e.g. a live switch from English to German)
        await old.finalize(reopen=False)
        self.transcriber = Transcriber(
            language, old.sample_rate, old.encoding, merged["options"], self.send_one, old.position
        )
        return False

    async def finalize(self, data: dict[str, Any]) -> bool:
        await self.transcriber.finalize()
        self.record.finalized = True
        await self.send({"type": "session.finalized"})
        return False

    async def close(self, data: dict[str, Any]) -> bool:
        await self.transcriber.finalize(reopen=False)
        self.record.finalized = True
        await self.send({"type": "session.closed"})
        return True

    HANDLERS: ClassVar = {
        "session.create": create,
        "input_audio": audio,
        "session.update": update,
        "session.finalize": finalize,
        "session.close": close,
    }


# the fields each message's handler reads, and their JSON types (None: absent); others are
# ignored, as LiveKit adds some (e.g. session.create's `connection`)
MESSAGE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "session.create": {"model": (str,), "settings": (dict,), "fallback": (dict,)},
    "input_audio": {"audio": (str,)},
    "session.update": {"settings": (dict,)},
    "session.finalize": {},
    "session.close": {},
}
SETTINGS_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "language": (str,),
    "encoding": (str,),
    "sample_rate": (str, int),  # LiveKit sends it as a string
    "extra": (dict,),
}


def check_shape(data: dict[str, Any]) -> None:
    """BadRequestError when a field a handler reads has the wrong JSON type."""

    def check(where: str, value: Any, types: tuple[type, ...]) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            names = " or ".join(
                {str: "a string", int: "a number", dict: "an object"}[t] for t in types
            )
            raise BadRequestError(f"{where} must be {names}, not {json.dumps(value)[:40]}")

    kind = data["type"]
    for name, types in MESSAGE_FIELDS[kind].items():
        check(f"{kind}.{name}", data.get(name), types)
    for name, types in SETTINGS_FIELDS.items():
        check(f"{kind}.settings.{name}", (data.get("settings") or {}).get(name), types)
    models = (data.get("fallback") or {}).get("models")
    if models is not None and not (
        isinstance(models, list)
        and all(isinstance(m, dict) and isinstance(m.get("model"), str) for m in models)
        and all(isinstance(m.get("extra") or {}, dict) for m in models)
    ):
        raise BadRequestError('fallback.models must be a list of {"model": "...", "extra": {}}')


def _validate_inference(settings: dict[str, Any]) -> None:
    model = settings["model"]
    if model == "auto":  # LiveKit picks the provider: check against the default it would use
        model = catalog.CLOUD_DEFAULTS["stt"].split(":")[0]
    validate(model, settings["language"], settings["options"], source="extra")
