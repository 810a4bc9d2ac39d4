"""Cartesia's batch transcription: `POST /stt` and its OpenAI-compatible twin
`POST /audio/transcriptions` (same form, same JSON answer), what `client.stt.transcribe` and
`OpenAI(base_url=...).audio.transcriptions.create` send.

The multipart form: `file` (required), `model` (ink-whisper), `language` (default en),
`timestamp_granularities[]` (`word`). Query parameters `encoding` and `sample_rate` describe a
headerless raw PCM file; any other file is decoded by FFmpeg (tools/audio_files.py: flac, m4a,
mp3, mp4, mpeg, mpga, oga, ogg, wav, webm and more). Long files go to the engine in windows of
at most 30 s, cut at quiet moments. The answer is Cartesia's:
`{"type": "transcript", "text", "request_id", "language", "duration", "words"?}`.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from aiohttp import web

from agent import config
from agent.errors import AudioFileError
from tools import audio_files
from tools.transcribe import LocalEngine

from .auth import CartesiaError, Keys, api_version
from .cartesia import MODEL_ALIASES, invalid, request_id
from .engine import local_engine
from .sessions import GATEWAY
from .validation import BadRequestError, validate

logger = logging.getLogger("gateway.batch")

BATCH_MODELS = ("ink-whisper",)  # Cartesia: "must be in the ink-whisper family"
FORM_FIELDS = ("file", "model", "language", "timestamp_granularities[]", "timestamp_granularities")
MAX_UPLOAD = 200 * 1024 * 1024  # bytes; aiohttp's default (1 MiB) is a few seconds of WAV
_engines: dict[str, LocalEngine] = {}
_lock = asyncio.Lock()  # one file at a time: the engines are shared and CPU-bound


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
        audio = await asyncio.to_thread(decode, upload, encoding, rate)
        descriptor = local_engine(language)
    except BadRequestError as e:
        return invalid(str(e)).response(rid)
    except CartesiaError as e:
        return e.response(rid)

    async with _lock:
        result = await asyncio.to_thread(run_engine, descriptor, audio, language, words)
    logger.info("batch %s: %.1f s of audio, %s, %s", rid, audio.duration, descriptor, request.path)
    return web.json_response({**result.to_json(words), "request_id": rid})


async def read_form(request: web.Request):
    if not request.content_type.startswith("multipart/"):
        raise invalid("send a multipart/form-data body with the audio in the field 'file'")
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise CartesiaError(
            413, "file_too_large", "File too large", f"the file is over {MAX_UPLOAD >> 20} MiB"
        ) from None
    unknown = sorted(set(form) - set(FORM_FIELDS))
    if unknown:
        raise invalid(
            f"unsupported form field(s): {', '.join(unknown)}; "
            "fields: file, model, language, timestamp_granularities[]"
        )
    return form


def decode(upload: web.FileField, encoding: str | None, rate: str | None) -> audio_files.Audio:
    """The uploaded file as 16 kHz mono, or CartesiaError(400) saying what is wrong with it."""
    try:
        sample_rate = int(rate) if rate else None
    except ValueError:
        raise invalid(f"sample_rate {rate!r} is not a number of Hz") from None
    suffix = Path(upload.filename or "").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(upload.file.read())
        f.flush()
        try:
            audio = audio_files.load(f.name, encoding, sample_rate)
        except AudioFileError as e:
            # the message names our temporary file: say "the file" (and the client's name)
            name = upload.filename or "the file"
            message = str(e).replace(f.name, name).replace("--encoding", "encoding")
            message = message.replace("--sample-rate", "sample_rate")
            raise CartesiaError(400, "invalid_audio", "Invalid audio", message) from None
    return audio


def run_engine(descriptor: str, audio, language: str, words: bool):
    if descriptor not in _engines:
        settings = config.Settings()
        _engines[descriptor] = LocalEngine(config.parse("stt", descriptor), settings)
    result = _engines[descriptor].transcribe(audio, descriptor.split(":")[1], words, lambda _: None)
    result.language = language  # as asked ("en-US" stays "en-US"); transcribed in that language
    return result
