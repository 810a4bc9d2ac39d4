"""Moonshine tiny-en as a streaming LiveKit STT plugin, fully offline.

The weights ship inside the `moonshine-voice==0.0.73` wheel. One model is loaded per
process and shared by every stream of that process, so an extra call costs a Moonshine
stream, not another model.

Moonshine's Transcriber is not safe to drive from several threads: two streams decoding at
once, or a stream freed while it decodes, corrupt its heap (SIGSEGV, "double free"). So every
call into the model runs on one engine thread per process (`on_engine`): its queue serializes
the calls, and a stream's close is queued behind its last decode. The native code releases
the GIL, so the event loop keeps running while the engine thread decodes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    stt,
    utils,
)
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given
from moonshine_voice.transcriber import LineCompleted, LineTextChanged

from ..audio import SPEECH_RMS, float_mono, rms
from . import Segment, require_english

SAMPLE_RATE = 16000
CHUNK_SAMPLES = SAMPLE_RATE // 10  # feed the model 100 ms at a time: fewer thread hops
_WORD = re.compile(r"\w")
# A line whose audio is speech for less than this share of its span was heard in silence
# (measured: such lines 0-0.2, lines of real and synthesized speech 0.46-0.72).
MIN_SPEECH_SHARE = 0.3


_load_lock = threading.Lock()  # job threads prewarm together; moonshine's loader is not thread-safe
T = TypeVar("T")
Step = tuple[list, np.ndarray]  # a step's Moonshine events, and the audio their lines are in
# When a step ends the caller's speech (STT END_OF_SPEECH): with a line Moonshine completes on
# its own, not yet (a line finished early, SETTLE_CHUNKS), now (the gate, the end of input),
# or now and with a final even if empty, the answer LiveKit waits for after its flush.
SpeechEnd = Literal["with_line", "not_yet", "now", "flushed"]


@functools.cache
def _engine_of(pid: int) -> ThreadPoolExecutor:
    # keyed by process: a process forked from one that had an engine thread needs its own
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="moonshine")


def engine() -> ThreadPoolExecutor:
    """This process's one thread that touches the model and its streams."""
    return _engine_of(os.getpid())


async def on_engine(fn: Callable[..., T], *args) -> T:
    """Run `fn(*args)` on the engine thread, after every call queued before it."""
    return await asyncio.get_running_loop().run_in_executor(engine(), fn, *args)


@functools.cache
def _load(model: str):
    from moonshine_voice import ModelArch, Transcriber, get_model_path

    # One onnxruntime thread per session: a decode on a pool of spinning threads took 2.5x the
    # CPU and was no faster with other calls busy on the other core (Moonshine reads this
    # variable when it creates its sessions).
    os.environ.setdefault("MOONSHINE_ORT_SINGLE_THREAD", "1")
    # speaker identification and each line's audio returned as a Python list (~15 % of the
    # decode time) cost compute, and the agent uses neither
    options = {"identify_speakers": "false", "return_audio_data": "false"}
    return Transcriber(str(get_model_path(model)), ModelArch.TINY, options=options)


def load_transcriber(model: str = "tiny-en"):
    """The process-wide Moonshine model (loading takes ~0.5 s and ~100 MB)."""
    with _load_lock:
        return _load(model)


# Tiny-en cannot stream: each interim transcript re-decodes the whole line so far, which is
# most of a call's CPU. Interims only show the caller what is being heard (interruptions
# follow the VAD, the final comes from the flush at the end of the turn), so they come every
# second of speech, and none while the engine is behind (a busy machine: the final must not
# wait behind them). Measured on a slow 2-core machine: a call's interims cost 0.043 of its
# 0.35 cores.
UPDATE_INTERVAL = 1.0
# After this much quiet audio the line has most likely ended: finish it and send its final
# transcript now, rather than at the session's flush. LiveKit flushes only after the VAD has
# called the end of speech (~0.3 s of silence) and the end-of-turn model has predicted, so
# the final came one decode after both; on a busy machine each of the three waits for a core.
# The end of speech itself is still left to the flush (or MIN_SILENCE): a pause mid-
# sentence gives two finals in one turn, not two turns. (200 ms: after 100 ms, Moonshine has
# not always heard the last word out; its text may still end in a comma.) The restart costs
# words a short pause splits: on 44 s of read Dickens, WER 0.092 with early finals, 0.042
# without (the engine on the whole file). The `early_finals` option turns it off for clients
# that want whole utterances rather than a final as soon as possible (the gateway's).
SETTLE_CHUNKS = 2
# A line cut off so soon after its last word, Moonshine may decode with words repeated past
# its end ("…by the door by the door by"): it is given this much digital silence to end in
# (measured on the latency benchmark's call audio: WER 8.8 % without, 0 with). Not a line the
# session's flush cuts: after digital silence, padded, "…a lovely day it is." got a "Thank
# you" (push-to-talk waits for this path instead: agent/push_to_talk.py RELEASE_GRACE_S).
SETTLE_PAD_S = 0.3
# After this many seconds of quiet audio the caller's speech is over (END_OF_SPEECH, the
# `min_silence` option): stop feeding the model (its own VAD would still run on every chunk)
# until the next loud chunk, fed with the PREROLL chunks before it.
MIN_SILENCE = 1.0
PREROLL_CHUNKS = 3


def heard(line, samples: np.ndarray, rate: int, min_volume: float = 0.0) -> bool:
    """Whether a line has words over audio that is mostly speech (`samples` start where the
    line's clock does; speech is louder than SPEECH_RMS and `min_volume`). Like Whisper,
    Moonshine can "hear" a lone "You" in silence: in a stream, in the quiet lead-in of a line
    that resumes after a pause, up to the first word's onset (so a line's loudness alone does
    not tell)."""
    span = samples[int(line.start_time * rate) : int((line.start_time + line.duration) * rate)]
    step = rate // 50  # 20 ms
    frames = span[: len(span) // step * step].reshape(-1, step)
    if not len(frames):
        return False
    loud = np.sqrt((frames**2).mean(axis=1)) >= max(SPEECH_RMS, min_volume)
    return float(loud.mean()) >= MIN_SPEECH_SHARE and bool(_WORD.search(line.text))


def heard_lines(lines: list, samples: np.ndarray, rate: int, min_volume: float = 0.0) -> list:
    return [line for line in lines if heard(line, samples, rate, min_volume)]


@dataclass
class MoonshineOptions:
    language: str = "en"
    update_interval: float = UPDATE_INTERVAL  # seconds of speech between interim re-decodes
    # audio quieter than this RMS (full scale 1.0) is silence, as below SPEECH_RMS (Cartesia's
    # min_volume, which the gateway passes on)
    min_volume: float = 0.0
    min_silence: float = MIN_SILENCE  # seconds of silence that end the caller's speech
    early_finals: bool = True  # a line's final after SETTLE_CHUNKS of quiet


class MoonshineSTT(stt.STT):
    fork_safe = True  # loaded before a fork, its onnxruntime sessions work in the child

    def __init__(
        self,
        *,
        language: str = "en",
        update_interval: float = UPDATE_INTERVAL,
        min_volume: float = 0.0,
        min_silence: float = MIN_SILENCE,
        early_finals: bool = True,
    ) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True, interim_results=True, manual_flush=True
            )
        )
        require_english("local/moonshine-tiny", language)
        self._opts = MoonshineOptions(
            language, update_interval, min_volume, min_silence, early_finals
        )

    @property
    def model(self) -> str:
        return "moonshine-tiny"

    @property
    def provider(self) -> str:
        return "local"

    def prewarm(self) -> None:
        load_transcriber()

    def transcribe_samples(
        self, samples: np.ndarray, word_timestamps: bool = False
    ) -> list[Segment]:
        """16 kHz mono float32 -> one Segment per line (tiny-en has no word times)."""
        transcriber = load_transcriber()
        result = (
            engine()
            .submit(transcriber.transcribe_without_streaming, samples.tolist(), SAMPLE_RATE)
            .result()
        )
        return [
            Segment(line.start_time, line.start_time + line.duration, line.text.strip())
            for line in heard_lines(result.lines, samples, SAMPLE_RATE, self._opts.min_volume)
        ]

    def update_options(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        min_volume: NotGivenOr[float] = NOT_GIVEN,
        min_silence: NotGivenOr[float] = NOT_GIVEN,
        early_finals: NotGivenOr[bool] = NOT_GIVEN,
    ) -> None:
        """New options for this STT and its running streams (from their next chunk)."""
        if is_given(language):
            require_english("local/moonshine-tiny", language)
        if is_given(min_volume):
            self._opts.min_volume = min_volume
        if is_given(min_silence):
            self._opts.min_silence = min_silence
        if is_given(early_finals):
            self._opts.early_finals = early_finals

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frame = rtc.combine_audio_frames(buffer)
        samples = float_mono(frame)
        transcript = await on_engine(
            load_transcriber().transcribe_without_streaming, samples.tolist(), frame.sample_rate
        )
        lines = heard_lines(transcript.lines, samples, frame.sample_rate, self._opts.min_volume)
        text = " ".join(line.text.strip() for line in lines)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid(),
            alternatives=[
                stt.SpeechData(
                    language=self._opts.language,
                    text=text,
                    start_time=lines[0].start_time if lines else 0.0,
                    end_time=(lines[-1].start_time + lines[-1].duration) if lines else 0.0,
                )
            ],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> MoonshineStream:
        return MoonshineStream(stt=self, opts=self._opts, conn_options=conn_options)


class MoonshineStream(stt.RecognizeStream):
    """Feeds the call's audio to a Moonshine stream on the engine thread, without waiting for
    it: the input loop queues each step on the engine thread and moves on, and an emitter task
    turns each step's results into SpeechEvents in order. On a busy machine the engine thread
    may run behind the call for a moment; the audio then waits in its queue, not in the event
    loop, and a flush queued behind it costs no more than the audio still to feed."""

    def __init__(
        self, *, stt: MoonshineSTT, opts: MoonshineOptions, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._opts = opts
        self._speaking = False
        self._request_id = utils.shortuuid()
        self._origin = 0.0  # call seconds at which Moonshine's clock last restarted from 0

    async def _run(self) -> None:
        transcriber = await asyncio.to_thread(load_transcriber)
        # interims are decoded here (update_transcription), not by add_audio on its own clock
        mstream = await on_engine(transcriber.create_stream, float("inf"))
        # Listener callbacks fire inside update_transcription/stop, on the engine thread:
        # collect them there and turn them into SpeechEvents back on the event loop.
        pending: list = []
        mstream.add_listener(pending.append)
        # engine-thread state
        fed: list[np.ndarray] = []  # audio fed since Moonshine's clock last restarted
        unread = 0.0  # seconds fed since the last decode
        silent = True  # nothing loud fed since the clock restarted: no line to finish

        def feed(chunks: list[np.ndarray], loud: bool, interval: float) -> Step:
            nonlocal unread, silent
            for samples in chunks:
                mstream.add_audio(samples.tolist(), SAMPLE_RATE)
                unread += len(samples) / SAMPLE_RATE
            fed.extend(chunks)
            silent = silent and not loud
            if unread >= interval and not silent:
                mstream.update_transcription()
                unread = 0.0
            return drain()

        def restart(pad: float = 0.0) -> Step:  # finish the line now; Moonshine's clock restarts
            nonlocal unread, silent
            if not silent:
                mstream.add_audio([0.0] * int(pad * SAMPLE_RATE), SAMPLE_RATE)
                # stop() completes the line with the text of the last decode: decode the
                # audio since then first, or the final transcript misses the last words
                mstream.update_transcription()
            mstream.stop()
            mstream.start()
            unread, silent = 0.0, True
            step = drain()
            fed.clear()
            return step

        def drain() -> Step:
            events = pending.copy()
            pending.clear()
            return events, (np.concatenate(fed) if events and fed else np.zeros(0, np.float32))

        # each queued step, the clock origin its lines are timed from, and when it ends the
        # caller's speech (SpeechEnd), in order
        steps: asyncio.Queue[tuple[asyncio.Future[Step], float, SpeechEnd] | None]
        steps = asyncio.Queue()

        def queue(fn: Callable[..., Step], *args, speech_end: SpeechEnd = "with_line") -> None:
            step = asyncio.wrap_future(engine().submit(fn, *args))
            steps.put_nowait((step, self._origin, speech_end))

        async def emit_steps() -> None:
            while (item := await steps.get()) is not None:
                step, origin, speech_end = item
                self._emit(*await step, origin, speech_end)

        chunker = utils.audio.AudioByteStream(
            sample_rate=SAMPLE_RATE, num_channels=1, samples_per_channel=CHUNK_SAMPLES
        )
        received = 0.0  # seconds of call audio received
        quiet = 0  # consecutive quiet chunks
        preroll: list[np.ndarray] = []  # the latest quiet chunks not fed (gated)

        await on_engine(mstream.start)
        emitter = asyncio.create_task(emit_steps())
        try:
            async for item in self._input_ch:
                if emitter.done():  # a step failed: fail the stream with its error
                    emitter.result()
                if isinstance(item, self._FlushSentinel):
                    tail = [float_mono(frame) for frame in chunker.flush()]
                    if tail:  # a quiet tail after an early final leaves no line to finish
                        queue(feed, tail, any(map(self._loud, tail)), float("inf"))
                    queue(restart, speech_end="flushed")
                    self._origin = received + sum(len(t) for t in tail) / SAMPLE_RATE
                    continue
                for frame in chunker.push(item.data):
                    samples = float_mono(frame)
                    received += CHUNK_SAMPLES / SAMPLE_RATE
                    loud = self._loud(samples)
                    quiet = 0 if loud else quiet + 1
                    gate_after = max(1, round(self._opts.min_silence * SAMPLE_RATE / CHUNK_SAMPLES))
                    if quiet > gate_after:  # silence: skip the model
                        if quiet == gate_after + 1:
                            queue(restart, speech_end="now")
                        preroll = [*preroll, samples][-PREROLL_CHUNKS:]
                        continue
                    chunks = [*preroll, samples]
                    if preroll:  # speech again: the model's clock starts at the preroll
                        self._origin = received - len(chunks) * CHUNK_SAMPLES / SAMPLE_RATE
                        preroll = []
                    if not loud or steps.qsize() > 1:
                        # quiet (the line may be ending: its final would wait behind the
                        # interim's decode), or the engine is behind: no interim
                        interval = float("inf")
                    else:
                        interval = self._opts.update_interval
                    queue(feed, chunks, loud, interval)
                    if quiet == SETTLE_CHUNKS and self._opts.early_finals:
                        queue(restart, SETTLE_PAD_S, speech_end="not_yet")
                        self._origin = received
            queue(restart, speech_end="now")
            steps.put_nowait(None)
            await emitter
        finally:
            await utils.aio.cancel_and_wait(emitter)
            while not steps.empty():  # the stream is gone: steps not yet run need not run
                if item := steps.get_nowait():
                    item[0].cancel()
            # Queued behind every step: even when this task is cancelled mid-decode, the close
            # runs on the engine thread after that decode has finished, never during it.
            engine().submit(mstream.close)

    def _loud(self, samples: np.ndarray) -> bool:
        return rms(samples) >= max(SPEECH_RMS, self._opts.min_volume)

    def _emit(
        self, events: list, samples: np.ndarray, origin: float, speech_end: SpeechEnd
    ) -> None:
        # A line counts only if its own audio is speech (`samples`: the audio fed since the
        # clock restarted): passed on, a "You" heard in the quiet lead-in of a line would
        # interrupt the agent or end up in the user's turn.
        finals = 0
        for ev in events:
            line = ev.line
            text = line.text.strip()
            speech = heard(line, samples, SAMPLE_RATE, self._opts.min_volume)
            if isinstance(ev, LineTextChanged) and speech and not line.is_complete:
                self._start_speech()
                self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, line, text, origin)
            elif isinstance(ev, LineCompleted):
                if speech:
                    self._start_speech()
                    self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, line, text, origin)
                    finals += 1
                if speech_end == "with_line":
                    self._end_speech()
                self._request_id = utils.shortuuid()
        if speech_end == "flushed" and not finals:  # the line was finished already
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, text="")
        if speech_end in ("now", "flushed"):
            self._end_speech()

    def _end_speech(self) -> None:
        if self._speaking:
            self._speaking = False
            self._send(stt.SpeechEventType.END_OF_SPEECH)

    def _start_speech(self) -> None:
        if not self._speaking:
            self._speaking = True
            self._send(stt.SpeechEventType.START_OF_SPEECH)

    def _send(
        self, kind: stt.SpeechEventType, line=None, text: str = "", origin: float = 0.0
    ) -> None:
        alternatives = []
        if kind == stt.SpeechEventType.FINAL_TRANSCRIPT and line is None:
            alternatives.append(stt.SpeechData(language=self._opts.language, text=""))
        elif line is not None:
            start = self.start_time_offset + origin + line.start_time
            alternatives.append(
                stt.SpeechData(
                    language=self._opts.language,
                    text=text,
                    start_time=start,
                    end_time=start + line.duration,
                    confidence=1.0,
                )
            )
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=kind, request_id=self._request_id, alternatives=alternatives)
        )
