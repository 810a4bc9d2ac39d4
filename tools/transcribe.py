"""`python -m agent transcribe FILE...`: audio files to text with any configured STT.

    python -m agent transcribe talk.mp3                          # local/moonshine-tiny:en
    python -m agent transcribe --stt local/whisper-tiny:en --timestamps word a.wav
    python -m agent transcribe --stt cartesia/ink-whisper --language de --format srt b.m4a
    python -m agent transcribe --encoding pcm_s16le --sample-rate 8000 call.raw

Descriptors are parsed and validated exactly as for the session (agent/config/). Local
engines run offline; Cartesia goes through its batch API (`POST /stt`, or the
OpenAI-compatible `/audio/transcriptions` with `--api openai`). The JSON output has the shape
of Cartesia's batch response, whichever engine produced it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass

import aiohttp

from agent import audio_files, catalog, config
from agent.audio_files import Audio, FileTranscript, LocalEngine, Progress
from agent.config import Descriptor, Settings
from agent.errors import ConfigError, ServiceError
from agent.plugins import Segment, Word


def transcribes_files(model: catalog.Model) -> bool:
    if model.picks:  # local/auto: the engines it picks from
        return all(transcribes_files(catalog.MODELS[(model.kind, m)]) for m in model.picks)
    if model.route == "local":
        return hasattr(config.plugin_class(model.plugin), "transcribe_samples")
    return model.provider in BATCH_APIS


@dataclass(frozen=True)
class BatchAPI:
    """A provider's file-transcription endpoint and where its key and address come from."""

    key_setting: str
    base_url_setting: str
    default_base_url: str


BATCH_APIS = {
    "cartesia": BatchAPI("cartesia_api_key", "cartesia_base_url", "https://api.cartesia.ai"),
}
CARTESIA_VERSION = "2025-04-16"  # the version livekit-plugins-cartesia speaks


def _cartesia_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Cartesia-Version": CARTESIA_VERSION}


def _openai_headers(key: str) -> dict[str, str]:  # what the OpenAI SDK sends, plus the version
    return {"Authorization": f"Bearer {key}", "Cartesia-Version": CARTESIA_VERSION}


# --api: URL path and auth headers; both take the same multipart form (Cartesia's OpenAI-compatibility guide)
API_STYLES = {
    "cartesia": ("/stt", _cartesia_headers),
    "openai": ("/audio/transcriptions", _openai_headers),
}


class BatchEngine:
    def __init__(self, desc: Descriptor, settings: Settings, api: str = "cartesia", base_url=""):
        spec = BATCH_APIS[desc.model.provider]
        self._key = getattr(settings, spec.key_setting).get_secret_value()
        if not self._key:
            raise ConfigError(
                f"STT={desc} goes through {desc.model.provider}'s batch API: set "
                f"{spec.key_setting.upper()} (in .env or the environment), or use a local "
                f"model, e.g. --stt {catalog.LOCAL_DEFAULTS['stt']}"
            )
        base = base_url or getattr(settings, spec.base_url_setting) or spec.default_base_url
        path, self._headers = API_STYLES[api]
        self.url = base.rstrip("/") + path
        self._model = desc.model.name

    def transcribe(self, audio: Audio, language: str, words: bool, progress: Progress):
        result = asyncio.run(self.request(audio, language, words))
        progress(audio.duration)
        return result

    async def request(self, audio: Audio, language: str, words: bool) -> FileTranscript:
        form = aiohttp.FormData()
        form.add_field("file", audio.path.read_bytes(), filename=audio.path.name)
        form.add_field("model", self._model)
        form.add_field("language", language)
        if words:
            form.add_field("timestamp_granularities[]", "word")
        params = {}
        if audio.format in audio_files.RAW_ENCODINGS:  # raw PCM: the server needs its format
            params = {"encoding": audio.format, "sample_rate": str(audio.source_rate)}
        timeout = aiohttp.ClientTimeout(total=60 + 2 * audio.duration)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.post(
                    self.url, data=form, params=params, headers=self._headers(self._key)
                ) as resp,
            ):
                body = await resp.text()
                if resp.status != 200:
                    raise ServiceError(
                        f"{self.url} answered HTTP {resp.status}: {_error_message(body)}"
                        + ("; check the API key" if resp.status in (401, 403) else "")
                    )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ServiceError(
                f"cannot reach {self.url} ({type(e).__name__}: {e}); check the network, "
                "or point CARTESIA_BASE_URL / --base-url elsewhere"
            ) from None
        try:
            data = json.loads(body)
            timed = [
                Word(w["word"], float(w["start"]), float(w["end"])) for w in data.get("words") or ()
            ]
            return FileTranscript(
                data["text"].strip(),
                data.get("language") or language,
                float(data.get("duration") or audio.duration),
                cues(timed) if timed else [Segment(0.0, audio.duration, data["text"].strip())],
                timed,
            )
        except (ValueError, KeyError, TypeError):
            raise ServiceError(
                f"{self.url} did not answer with a transcript: {body[:200]!r}"
            ) from None


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
        return str(data.get("message") or data.get("error") or data)[:200]
    except ValueError:
        return body[:200] or "(empty body)"


def make_engine(desc: Descriptor, settings: Settings, api: str = "cartesia", base_url: str = ""):
    """The engine for a descriptor, or a ConfigError naming what would work instead."""
    config.check_package(desc)
    if desc.model.route == "local" and transcribes_files(desc.model):
        return LocalEngine(desc)
    if desc.model.provider in BATCH_APIS:
        return BatchEngine(desc, settings, api, base_url)
    usable = [m.id for m in catalog.STT_MODELS if transcribes_files(m)]
    raise ConfigError(
        f"STT={desc} streams only (through LiveKit Inference); files can be transcribed "
        f"with: {', '.join(usable)}"
    )


def stt_descriptor(settings: Settings, stt: str | None, language: str | None) -> Descriptor:
    """--stt (or the session's STT), with --language replacing its language."""
    text = stt or settings.descriptor("stt")
    if language:
        text = text.split(":")[0] + ":" + language
    return config.parse("stt", text)


def with_word_timestamps(desc: Descriptor, chosen: bool) -> Descriptor:
    """`desc` if it gives word timestamps. On the defaults (no STT chosen), the first local model
    in the catalog that gives them in its language instead, said on stderr; a chosen model that
    cannot is a ConfigError naming the ones that can."""
    if desc.model.word_timestamps:
        return desc
    timed = [m for m in catalog.STT_MODELS if m.word_timestamps]
    if not chosen:
        for model in timed:
            if model.route == "local" and (not model.languages or desc.variant in model.languages):
                swapped = config.parse("stt", f"{model.id}:{desc.variant}")
                print(
                    f"transcribe: {desc} has no word timestamps; using {swapped}, {model.label}",
                    file=sys.stderr,
                )
                return swapped
    raise ConfigError(
        f"{desc.model.id} gives line timestamps only; for word timestamps use --stt with "
        f"one of: {', '.join(m.id for m in timed)}"
    )


# -- output ------------------------------------------------------------------------------------


def cues(words: list[Word], max_words: int = 10) -> list[Segment]:
    """Subtitle cues from word timings: break after a sentence end or every max_words."""
    out, current = [], []
    for w in words:
        current.append(w)
        if len(current) >= max_words or w.word.rstrip().endswith((".", "?", "!")):
            out.append(
                Segment(current[0].start, current[-1].end, " ".join(x.word for x in current))
            )
            current = []
    if current:
        out.append(Segment(current[0].start, current[-1].end, " ".join(x.word for x in current)))
    return out


def _srt_time(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def to_srt(t: FileTranscript) -> str:
    segments = cues(t.words) if t.words else t.segments
    return "\n".join(
        f"{i}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text}\n"
        for i, s in enumerate(segments, 1)
    )


def render(t: FileTranscript, fmt: str, words: bool, name: str | None) -> str:
    """One file's result; `name` is given when several files share the output."""
    if fmt == "json":
        data = t.to_json(words)
        return json.dumps({"file": name, **data} if name else data, ensure_ascii=False)
    body = t.text if fmt == "text" else to_srt(t)
    return f"==> {name} <==\n{body}" if name else body


# -- CLI ---------------------------------------------------------------------------------------


def add_audio_arguments(p: argparse.ArgumentParser, files: str = "+") -> None:
    p.add_argument("files", nargs=files, metavar="FILE")
    p.add_argument("--encoding", choices=list(audio_files.RAW_ENCODINGS), help="raw PCM files")
    p.add_argument("--sample-rate", type=int, help="raw PCM sample rate in Hz")
    p.add_argument("--api", choices=list(API_STYLES), default="cartesia", help="cloud API style")
    p.add_argument("--base-url", default="", help="cloud API address (default: the provider's)")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="python -m agent transcribe", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--stt", help=f"descriptor (default: the session's, {catalog.LOCAL_DEFAULTS['stt']})"
    )
    p.add_argument("--language", help="ISO-639-1 code; replaces the descriptor's language")
    p.add_argument("--timestamps", choices=["word"], help="include word timestamps")
    p.add_argument("--format", choices=["json", "text", "srt"], default="json")
    add_audio_arguments(p)
    args = p.parse_args(argv)

    settings = Settings.from_env()
    desc = stt_descriptor(settings, args.stt, args.language)
    words = args.timestamps == "word"
    audio_files.check_raw_args(args.encoding, args.sample_rate)
    if words:
        desc = with_word_timestamps(
            desc, chosen=bool(args.stt) or settings.source("stt") != "default"
        )
    # every file is decoded before any model loads: a bad one stops the run at once
    audios = [audio_files.load(f, args.encoding, args.sample_rate) for f in args.files]
    engine = make_engine(desc, settings, args.api, args.base_url)
    several = len(audios) > 1
    with ProgressBar(sum(a.duration for a in audios), enabled=several) as advance:
        for audio in audios:
            result = engine.transcribe(audio, desc.variant, words or args.format == "srt", advance)
            print(
                render(result, args.format, words, str(audio.path) if several else None), flush=True
            )


class ProgressBar:
    """A rich progress bar on stderr, in seconds of audio; a no-op when disabled."""

    def __init__(self, total: float, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("transcribing"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s of audio"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("audio", total=total)

    def __enter__(self) -> Progress:
        if self._bar is None:
            return lambda seconds: None
        self._bar.start()
        return lambda seconds: self._bar.advance(self._task, seconds)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
