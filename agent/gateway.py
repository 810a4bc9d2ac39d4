"""A local stand-in for LiveKit Inference STT and Cartesia's STT websocket, on one port.

`python -m agent gateway` serves the two wire protocols the agent's cloud STT speaks, so the
production setting `STT=cartesia/ink-whisper:en` runs offline, unchanged:

  /v1/stt              LiveKit Inference (what `inference.STT` and "cartesia/ink-whisper:en"
                       reach with LIVEKIT_INFERENCE_URL=http://HOST:PORT/v1)
  /stt/websocket       Cartesia ink-whisper (what `cartesia.STT(model="ink-whisper")` reaches
                       with base_url / CARTESIA_BASE_URL=http://HOST:PORT)
  /sessions            what every session asked for, as JSON (no secrets), for tests and checks

Both are answered by the embedded Moonshine tiny-en model. Moonshine only speaks English: a
session in another language is accepted (the gateway stands in for the cloud, which would accept
it) and transcribed as English, and its results carry the language that was asked for.

Cartesia's `min_volume` and `max_silence_duration_secs` are honoured (see `Recognizer`); the
other providers' options are validated against agent/catalog.py and recorded, not applied.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web
from livekit import api, rtc
from livekit.agents import utils
from moonshine_voice.transcriber import LineCompleted, LineStarted, LineTextChanged

from . import catalog, config
from .audio_files import RAW_ENCODINGS
from .plugins.moonshine import load_transcriber

logger = logging.getLogger("agent.gateway")

DEFAULT_PORT = 8089
DEFAULT_CARTESIA_KEY = "local-dev-key"
ENGINE_RATE = 16000  # Moonshine's rate: other rates are resampled
WINDOW = ENGINE_RATE // 20  # 50 ms: the unit of the volume gate and of silence counting
DEFAULT_MAX_SILENCE = 0.5  # seconds, when a session does not set max_silence_duration_secs
CARTESIA_MODEL = "ink-whisper"
CARTESIA_STT = "cartesia/ink-whisper"  # its catalog entry: languages and options


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class Transcript:
    text: str
    is_final: bool
    start: float  # seconds of session audio
    end: float
    position: float  # how much audio had arrived when it was produced

    def words(self) -> list[dict[str, Any]]:
        """Word timings spread over the utterance by length: tiny-en has no word timestamps."""
        words = self.text.split()
        total = sum(len(w) + 1 for w in words) or 1
        out, t = [], self.start
        for w in words:
            d = (self.end - self.start) * (len(w) + 1) / total
            out.append({"word": w, "start": round(t, 3), "end": round(t + d, 3)})
            t += d
        return out


@dataclass
class Recognizer:
    """One session's audio in, interim and final transcripts out (Cartesia's semantics).

    - min_volume: a 50 ms window whose RMS (full scale = 1.0) is below it is silence: the
      model hears zeros there. 0 (the default) lets everything through.
    - max_silence_duration_secs: once speech was heard, this much silence ends the utterance
      and its final is sent. Silence is a quiet window or no speech line open in Moonshine's
      own voice detector, so endpointing also works over a noise floor.
    Between two finals Moonshine may close several lines: they are joined into one utterance,
    and interims carry the whole utterance so far (a delta since the last final, as Cartesia).
    """

    sample_rate: int
    encoding: str
    min_volume: float = 0.0
    max_silence: float = DEFAULT_MAX_SILENCE
    position: float = 0.0  # seconds of audio received
    _pending: list = field(default_factory=list)  # Moonshine events, filled on its thread
    # closed lines of the current utterance by id (Moonshine may report a completion twice)
    _lines: dict[int, str] = field(default_factory=dict)
    _line: str = ""  # the open line's text
    _line_open: bool = False
    _start: float | None = None  # the utterance's span in session seconds
    _end: float = 0.0
    _origin: float = 0.0  # Moonshine's clock restarts at every stream start
    _silence: float = 0.0
    _last_interim: str = ""
    _tail: bytes = b""  # bytes of a sample split across two messages
    _buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        self._width, self._decode = RAW_ENCODINGS[self.encoding]
        self._resampler = (
            rtc.AudioResampler(
                self.sample_rate, ENGINE_RATE, quality=rtc.AudioResamplerQuality.HIGH
            )
            if self.sample_rate != ENGINE_RATE
            else None
        )
        self._stream = None

    async def push(self, data: bytes) -> list[Transcript]:
        return await asyncio.to_thread(self._feed, self._to_engine(data), False)

    async def finalize(self) -> list[Transcript]:
        """Everything heard so far becomes final now (Cartesia `finalize`, Inference
        `session.finalize`)."""
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = _int16_to_float(b"".join(f.data.tobytes() for f in self._resampler.flush()))
        return await asyncio.to_thread(self._feed, tail, True)

    async def aclose(self) -> None:
        if self._stream is not None:
            await asyncio.to_thread(self._stream.close)
            self._stream = None

    def _to_engine(self, data: bytes) -> np.ndarray:
        data = self._tail + data
        cut = len(data) - len(data) % self._width
        data, self._tail = data[:cut], data[cut:]
        samples = self._decode(data)
        if self._resampler is None or not len(samples):
            return samples
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        frames = self._resampler.push(rtc.AudioFrame(pcm.tobytes(), self.sample_rate, 1, len(pcm)))
        return _int16_to_float(b"".join(f.data.tobytes() for f in frames))

    # everything below runs on a worker thread, one call at a time per session

    def _feed(self, samples: np.ndarray, final: bool) -> list[Transcript]:
        if self._stream is None:
            self._stream = load_transcriber().create_stream(0.5)
            self._stream.add_listener(self._pending.append)
            self._stream.start()
        self._buffer = np.concatenate([self._buffer, samples])
        if final and len(self._buffer) % WINDOW:
            self._buffer = np.pad(self._buffer, (0, WINDOW - len(self._buffer) % WINDOW))
        out: list[Transcript] = []
        while len(self._buffer) >= WINDOW:
            window, self._buffer = self._buffer[:WINDOW], self._buffer[WINDOW:]
            loud = float(np.sqrt(np.mean(window**2))) >= self.min_volume
            self._stream.add_audio((window if loud else np.zeros(WINDOW)).tolist(), ENGINE_RATE)
            self.position += WINDOW / ENGINE_RATE
            out += self._drain()
            self._silence = (
                0.0 if loud and self._line_open else self._silence + WINDOW / ENGINE_RATE
            )
            if self._start is not None and self._silence >= self.max_silence:
                out += self._end_utterance()
        if final:
            out += self._end_utterance()
        return out

    def _drain(self) -> list[Transcript]:
        out = []
        for ev in self._pending:
            line, text = ev.line, ev.line.text.strip()
            if isinstance(ev, LineStarted):
                self._line_open = True
                if self._start is None:
                    self._start = self._origin + line.start_time
            elif isinstance(ev, LineTextChanged) and text and not line.is_complete:
                self._line = text
            elif isinstance(ev, LineCompleted):
                self._line_open, self._line = False, ""
                if text:
                    self._lines[line.line_id] = text
                    self._end = self._origin + line.start_time + line.duration
            utterance = " ".join([*self._lines.values(), self._line])
            if utterance.strip() and utterance != self._last_interim:
                self._last_interim = utterance
                out.append(self._transcript(utterance.strip(), is_final=False))
        self._pending.clear()
        return out

    def _end_utterance(self) -> list[Transcript]:
        self._stream.stop()  # closes the open line, if any
        self._drain()  # interims of a line that is about to be final are not worth sending
        self._stream.start()
        self._origin = self.position
        text = " ".join(self._lines.values())
        out = [self._transcript(text, is_final=True)] if text else []
        self._lines, self._line, self._line_open = {}, "", False
        self._start, self._end, self._silence, self._last_interim = None, 0.0, 0.0, ""
        return out

    def _transcript(self, text: str, is_final: bool) -> Transcript:
        start = self._start if self._start is not None else self.position
        end = max(self._end, start) if is_final else self.position
        return Transcript(text, is_final, round(start, 3), round(end, 3), round(self.position, 3))


def _int16_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.int16).astype(np.float32) / 32768.0


# -- validation, shared by both routes -----------------------------------------------------------


class BadRequest(Exception):
    """A session parameter the real service would refuse; the message says which and why."""


def validate(model: str, language: str, options: dict[str, Any], source: str) -> None:
    """Check a model, language and provider options against the catalog, as the agent does."""
    base_language = language.split("-")[0] if language else ""
    try:
        desc = config.parse("stt", f"{model}:{base_language}" if base_language else model)
        if desc.model.route != "inference":
            raise config.ConfigError(f"{model} is not a LiveKit Inference model")
        config.check_options(desc, options, source=source)
    except config.ConfigError as e:
        raise BadRequest(str(e)) from None


def check_audio_format(sample_rate: Any, encoding: Any) -> int:
    try:
        rate = int(sample_rate)
    except (TypeError, ValueError):
        raise BadRequest(f"sample_rate {sample_rate!r} is not a number of Hz") from None
    if not 8000 <= rate <= 48000:
        raise BadRequest(f"sample_rate {rate} is out of range [8000, 48000]")
    if encoding not in RAW_ENCODINGS:
        raise BadRequest(f"encoding {encoding!r} is not one of: {', '.join(RAW_ENCODINGS)}")
    return rate


def vad_settings(options: dict[str, Any]) -> dict[str, float]:
    """Recognizer keyword arguments from provider options (Cartesia's names)."""
    out = {}
    if options.get("min_volume") is not None:
        out["min_volume"] = float(options["min_volume"])
    if options.get("max_silence_duration_secs") is not None:
        out["max_silence"] = float(options["max_silence_duration_secs"])
    return out


# -- LiveKit Inference: /v1/stt ------------------------------------------------------------------


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
    request_id = request.headers.get("X-LiveKit-Session-ID") or utils.shortuuid("stt_")
    record = gw.new_record("inference", request_id, subject=claims.identity)
    session = InferenceSession(gw, ws, record, query_model=request.query.get("model", ""))
    try:
        await session.run()
    finally:
        if session.recognizer is not None:
            await session.recognizer.aclose()
        await ws.close()
        gw.closed(session.record)
    return ws


@dataclass
class InferenceSession:
    """One /v1/stt websocket: JSON messages in, JSON messages out."""

    gw: Gateway
    ws: web.WebSocketResponse
    record: dict[str, Any]
    query_model: str = ""  # the model in the URL; session.create's takes precedence
    recognizer: Recognizer | None = None

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                handler = self.HANDLERS.get(data.get("type"))
                if handler is None:
                    logger.warning(
                        "%s: unknown message type %r", self.record["id"], data.get("type")
                    )
                elif self.recognizer is None and handler is not InferenceSession.create:
                    raise BadRequest(f"expected session.create first, not {data.get('type')!r}")
                elif await handler(self, data):
                    return
            except (BadRequest, ValueError) as e:  # ValueError: bad JSON or base64
                self.record["error"] = str(e)
                await self.send({"type": "error", "code": 400, "message": str(e)})
                return

    async def send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:  # the client may hang up right after session.close
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_str(json.dumps({**msg, "request_id": self.record["id"]}))

    async def send_transcripts(self, results: list[Transcript]) -> None:
        language = self.record["settings"]["language"] or "en"
        for t in results:
            self.gw.note(self.record, t)
            await self.send(
                {
                    "type": "final_transcript" if t.is_final else "interim_transcript",
                    "transcript": t.text,
                    "language": language,
                    "start": t.start,
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
            "language": settings.get("language", ""),
            "options": dict(settings.get("extra") or {}),
        }
        encoding = settings.get("encoding", "pcm_s16le")
        self.record.update(current, settings=dict(current), encoding=encoding)
        self.record["fallback"] = [
            m.get("model") for m in (data.get("fallback") or {}).get("models", [])
        ]
        self.record["sample_rate"] = rate = check_audio_format(
            settings.get("sample_rate", 16000), encoding
        )
        _validate_inference(current)
        self.recognizer = Recognizer(rate, encoding, **vad_settings(current["options"]))
        await self.send({"type": "session.created"})
        return False

    async def audio(self, data: dict[str, Any]) -> bool:
        results = await self.recognizer.push(base64.b64decode(data.get("audio", ""), validate=True))
        self.record["audio_seconds"] = round(self.recognizer.position, 3)
        await self.send_transcripts(results)
        return False

    async def update(self, data: dict[str, Any]) -> bool:
        update = data.get("settings") or {}
        self.record["updates"].append(update)
        merged = dict(self.record["settings"])
        merged.update({k: update[k] for k in ("model", "language") if k in update})
        merged["options"] = {**merged["options"], **(update.get("extra") or {})}
        _validate_inference(merged)
        self.record["settings"] = merged
        for name, value in vad_settings(merged["options"]).items():
            setattr(self.recognizer, name, value)
        return False

    async def finalize(self, data: dict[str, Any]) -> bool:
        await self.send_transcripts(await self.recognizer.finalize())
        self.record["finalized"] = True
        await self.send({"type": "session.finalized"})
        return False

    async def close(self, data: dict[str, Any]) -> bool:
        await self.send_transcripts(await self.recognizer.finalize())
        self.record["finalized"] = True
        await self.send({"type": "session.closed"})
        return True

    HANDLERS = {
        "session.create": create,
        "input_audio": audio,
        "session.update": update,
        "session.finalize": finalize,
        "session.close": close,
    }


def _validate_inference(settings: dict[str, Any]) -> None:
    model = settings["model"]
    if model == "auto":  # LiveKit picks the provider: check against the default it would use
        model = catalog.CLOUD_DEFAULTS["stt"].split(":")[0]
    validate(model, settings["language"], settings["options"], source="extra")


# -- Cartesia: /stt/websocket --------------------------------------------------------------------

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
            raise BadRequest(
                f"model {model!r} is not served on /stt/websocket here: use 'ink-whisper' "
                "(ink-2 uses /stt/turns/websocket, which the local gateway does not serve)"
            )
        options = {}
        for name in CARTESIA_OPTIONS:
            if name in query:
                try:
                    options[name] = float(query[name])
                except ValueError:
                    raise BadRequest(f"{name} must be a number, not {query[name]!r}") from None
        validate(CARTESIA_STT, language, options, source="query")
        rate = check_audio_format(query.get("sample_rate"), query.get("encoding"))
    except BadRequest as e:
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
    record["settings"] = {"model": model, "language": language, "options": options}
    recognizer = Recognizer(rate, query["encoding"], **vad_settings(options))
    last = 0.0  # the plugin lays transcripts end to end: each duration runs from the last one

    async def send(msg: dict[str, Any]) -> None:
        if not ws.closed:  # the client may hang up without waiting for `done`
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(json.dumps({**msg, "request_id": request_id}))

    async def send_transcripts(results: list[Transcript]) -> None:
        nonlocal last
        for t in results:
            gw.note(record, t)
            await send(
                {
                    "type": "transcript",
                    "is_final": t.is_final,
                    "text": t.text,
                    "duration": round(t.position - last, 3),
                    "language": language,
                    "words": t.words(),
                }
            )
            last = t.position

    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await send_transcripts(await recognizer.push(msg.data))
                record["audio_seconds"] = round(recognizer.position, 3)
            elif msg.type == WSMsgType.TEXT and msg.data == "finalize":
                await send_transcripts(await recognizer.finalize())
                await send({"type": "flush_done"})
            elif msg.type == WSMsgType.TEXT and msg.data in ("close", "done"):
                await send_transcripts(await recognizer.finalize())
                record["finalized"] = True
                await send({"type": "done"})
                break
            elif msg.type == WSMsgType.TEXT:
                # Cartesia's websocket error event; `code` is the field the LiveKit plugin reads
                error = {"type": "error", "done": True, "status_code": 400, "code": 400}
                error |= {"error_code": "invalid_request", "title": "Unknown command"}
                error["message"] = f"unknown text message {msg.data[:40]!r}: send audio as "
                error["message"] += "binary frames, 'finalize' or 'close'"
                await send(error)
    finally:
        await recognizer.aclose()
        await ws.close()
        gw.closed(record)
    return ws


async def cartesia_turns(request: web.Request) -> web.Response:
    return cartesia_error(
        400,
        "model_not_found",
        "Model not served locally",
        "the local gateway serves ink-whisper only (on /stt/websocket); use model='ink-whisper'",
        utils.shortuuid("cartesia_"),
    )


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Gateway:
    api_key: str
    api_secret: str
    cartesia_key: str
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def new_record(self, route: str, request_id: str, **values: Any) -> dict[str, Any]:
        record = {
            "id": request_id,
            "route": route,
            "model": "",
            "language": "",
            "options": {},
            "sample_rate": None,
            "encoding": None,
            "subject": None,
            "updates": [],
            "audio_seconds": 0.0,
            "interims": 0,
            "finals": [],
            "finalized": False,
            "closed": False,
            "error": None,
        }
        record.update(values)
        self.sessions.append(record)
        return record

    @staticmethod
    def closed(record: dict[str, Any]) -> None:
        record["closed"] = True
        logger.info(
            "%s session %s: %s:%s options=%s, %.1f s of audio, %d finals%s",
            record["route"],
            record["id"],
            record["model"],
            record["language"],
            json.dumps(record["options"]),
            record["audio_seconds"],
            len(record["finals"]),
            f", refused: {record['error']}" if record["error"] else "",
        )

    @staticmethod
    def note(record: dict[str, Any], t: Transcript) -> None:
        if t.is_final:
            record["finals"].append(t.text)
        else:
            record["interims"] += 1


GATEWAY = web.AppKey("gateway", Gateway)


async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].sessions)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sessions": len(request.app[GATEWAY].sessions)})


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application()
    app[GATEWAY] = gateway
    app.router.add_get("/v1/stt", inference_stt)
    app.router.add_get("/stt", inference_stt)  # LIVEKIT_INFERENCE_URL given without the /v1
    app.router.add_get("/stt/websocket", cartesia_stt)
    app.router.add_get("/stt/turns/websocket", cartesia_turns)
    app.router.add_get("/sessions", list_sessions)
    app.router.add_get("/", health)
    return app


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent gateway",
        description="Serve LiveKit Inference STT (/v1/stt) and Cartesia STT (/stt/websocket) "
        "locally, transcribed by Moonshine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--cartesia-key",
        help=f"the X-API-Key clients must send (default: $CARTESIA_API_KEY or {DEFAULT_CARTESIA_KEY})",
    )
    args = parser.parse_args(argv)
    settings = config.Settings.from_env()  # LIVEKIT_API_KEY/SECRET sign the agent's tokens
    gateway = Gateway(
        api_key=settings.livekit_api_key or "devkey",
        api_secret=settings.livekit_api_secret.get_secret_value() or "secret",
        cartesia_key=args.cartesia_key
        or settings.cartesia_api_key.get_secret_value()
        or DEFAULT_CARTESIA_KEY,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_transcriber()  # the first session should not wait for the model
    base = f"http://{args.host}:{args.port}"
    banner = (
        f"gateway on {base} (LiveKit API key {gateway.api_key}); point the agent at it with\n"
        f"  LIVEKIT_INFERENCE_URL={base}/v1\n  CARTESIA_BASE_URL={base}"
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
        raise config.ConfigError(
            f"cannot listen on {args.host}:{args.port} ({reason}): choose another --port"
        ) from None
