"""Cartesia's batch transcription: `POST /stt` and its OpenAI-compatible twin
`POST /audio/transcriptions` (same form, same JSON answer), what `client.stt.transcribe` and
`OpenAI(base_url=...).audio.transcriptions.create` send.

The multipart form: `file` (required), `model` (ink-whisper), `language` (default en),
`timestamp_granularities[]` (`word`). Query parameters `encoding` and `sample_rate` describe a
headerless raw PCM file; any other file is decoded by FFmpeg (agent/audio_files.py: flac, m4a,
mp3, mp4, mpeg, mpga, oga, ogg, wav, webm and more). Long files go to the engine in windows of
at most 30 s, cut at quiet moments; a window without speech is not transcribed (Whisper
invents words on silence). The answer is Cartesia's:
`{"type": "transcript", "text", "request_id", "language", "duration", "words"?}`.

Limits (gateway/limits.py): a body over GATEWAY_MAX_UPLOAD_MB is refused with 413, a file longer
than GATEWAY_MAX_AUDIO_SECONDS with 413 once its header or its decoding so far says so; files are
decoded and transcribed GATEWAY_BATCH_CONCURRENCY at a time, GATEWAY_BATCH_QUEUE more wait their
turn, and the rest get 429 with Retry-After. A client that hangs up stops its file's work at the
next 30 s window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
from pathlib import Path

from aiohttp import web

from agent import audio_files, config
from agent.audio_files import FileTranscript, LocalEngine
from agent.errors import AudioFileError

from .auth import CartesiaError, Keys, api_version
from .cartesia import MODEL_ALIASES, invalid, request_id
from .engine import local_engine
from .limits import RETRY_AFTER, BusyError, Limits
from .sessions import GATEWAY
from .validation import BadRequestError, validate

logger = logging.getLogger("services.gateway.batch")

BATCH_MODELS = ("ink-whisper",)  # Cartesia: "must be in the ink-whisper family"
FORM_FIELDS = ("file", "model", "language", "timestamp_granularities[]", "timestamp_granularities")
_engines: dict[str, LocalEngine] = {}


class ClientGoneError(Exception):
    """The client hung up: its file's work stops."""


async def transcribe(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rid = request_id()
    try:
        api_version(request)
        Keys(gw.cartesia_key).authenticate(request)
        form = await read_form(request)
        asked = str(form.get("model") or "")
        model = MODEL_ALIASES.get(asked, asked)
        if model not in BATCH_MODELS:
            raise invalid(
                f"model {asked!r} does not transcribe files: use ink-whisper"
                + (" (ink-2 streams only, on the websockets)" if model == "ink-2" else "")
            )
        language = str(form.get("language") or "en")
        validate(f"cartesia/{model}", language, {}, source="form")
        granularities = [
            str(g)
            for key in ("timestamp_granularities[]", "timestamp_granularities")
            for g in form.getall(key, [])
        ]
        if set(granularities) - {"word"}:
            raise invalid(f"timestamp_granularities {granularities} is not supported: use ['word']")
        words = "word" in granularities
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise invalid("send the audio as the multipart file field 'file'")
        encoding = request.query.get("encoding") or None
        rate = request.query.get("sample_rate")
        descriptor = local_engine(language)
        async with gw.batch.slot(), _watch_client(request) as gone:
            audio = await asyncio.to_thread(decode, upload, encoding, rate, gw.limits)
            result = await asyncio.to_thread(run_engine, descriptor, audio, language, words, gone)
    except BadRequestError as e:
        return refused(rid, invalid(str(e)))
    except CartesiaError as e:
        return refused(rid, e)
    except BusyError as e:
        logger.warning("batch %s turned away: %s", rid, e)
        busy = CartesiaError(429, "too_many_requests", "Too many requests", str(e))
        response = busy.response(rid)
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response
    except ClientGoneError:
        logger.info("batch %s: the client hung up, its transcription stopped", rid)
        return web.Response(status=499)  # nobody reads it
    logger.info("batch %s: %.1f s of audio, %s, %s", rid, audio.duration, descriptor, request.path)
    return web.json_response({**result.to_json(words), "request_id": rid})


def refused(rid: str, e: CartesiaError) -> web.Response:
    logger.info("batch %s refused (%d): %.200s", rid, e.status, e.message)
    return e.response(rid)


@contextlib.asynccontextmanager
async def _watch_client(request: web.Request):
    """A threading.Event set once the client's connection closes (aiohttp does not cancel a
    handler then, and a thread cannot be cancelled): the engine checks it between windows."""
    gone = threading.Event()

    async def watch() -> None:
        while not gone.is_set():
            if request.transport is None or request.transport.is_closing():
                gone.set()
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        yield gone
    finally:
        watcher.cancel()


async def read_form(request: web.Request):
    if not request.content_type.startswith("multipart/"):
        raise invalid("send a multipart/form-data body with the audio in the field 'file'")
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[GATEWAY].limits.max_upload_bytes / (1 << 20)
        raise CartesiaError(
            413,
            "file_too_large",
            "File too large",
            f"the upload is over {limit:g} MiB (GATEWAY_MAX_UPLOAD_MB)",
        ) from None
    except (ValueError, AssertionError, LookupError) as e:  # aiohttp's multipart parser
        raise invalid(f"the body is not a well-formed multipart/form-data form ({e})") from None
    unknown = sorted(set(form) - set(FORM_FIELDS))
    if unknown:
        raise invalid(
            f"unsupported form field(s): {', '.join(unknown)}; "
            "fields: file, model, language, timestamp_granularities[]"
        )
    return form


def decode(
    upload: web.FileField, encoding: str | None, rate: str | None, limits: Limits
) -> audio_files.Audio:
    """The uploaded file as 16 kHz mono, or CartesiaError saying what is wrong with it: 413
    when it holds more than GATEWAY_MAX_AUDIO_SECONDS, found before decoding all of it."""
    try:
        sample_rate = int(rate) if rate else None
    except ValueError:
        raise invalid(f"sample_rate {rate!r} is not a number of Hz") from None
    suffix = Path(upload.filename or "").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(upload.file.read())
        f.flush()
        try:
            audio = audio_files.load(f.name, encoding, sample_rate, limits.max_audio_seconds)
        except AudioFileError as e:
            # the message names our temporary file: say "the file" (and the client's name)
            name = upload.filename or "the file"
            message = str(e).replace(f.name, name).replace("--encoding", "encoding")
            message = message.replace("--sample-rate", "sample_rate")
            if isinstance(e, audio_files.TooLongError):
                message += " (GATEWAY_MAX_AUDIO_SECONDS)"
                raise CartesiaError(413, "audio_too_long", "Audio too long", message) from None
            raise CartesiaError(400, "invalid_audio", "Invalid audio", message) from None
    return audio


def run_engine(descriptor: str, audio, language: str, words: bool, gone: threading.Event):
    def progress(_seconds: float) -> None:  # after every 30 s window
        if gone.is_set():
            raise ClientGoneError

    progress(0)
    if not audio_files.has_speech(audio.samples):  # silence: nothing said, no model to load
        return FileTranscript("", language, audio.duration, [], [])
    if descriptor not in _engines:
        _engines[descriptor] = LocalEngine(config.parse("stt", descriptor))
    result = _engines[descriptor].transcribe(audio, descriptor.split(":")[1], words, progress)
    result.language = language  # as asked ("en-US" stays "en-US"); transcribed in that language
    return result
