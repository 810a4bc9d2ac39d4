"""LiveKit's VAD with sharper edges: the model decides what is speech, the signal's energy
says when it stopped and when it came back.

The end of a turn is timed from the VAD's end of speech, and a pause inside a sentence is told
apart only by the caller resuming before that timer runs out. Silero's edges are blurred by
its 32 ms windows and smoothing: its end of speech lands up to ~90 ms after the last word or
~60 ms before a soft one ends, and it confirms resumed speech ~110 ms after it starts. Every
millisecond of that blur is added to the wait a turn needs to survive a 400 ms pause. Energy
is exact on both edges, so:

- an end of speech the model reports is dated at the last loud frame;
- while a turn may still end (after an end of speech, for at most `listen_s`), the first loud
  frame reports speech at once; if the model has not confirmed it within `confirm_s` (a click,
  a breath), the end of speech is reported again, dated as before, and the turn goes on ending.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import replace

import numpy as np
from livekit import rtc
from livekit.agents import utils, vad

from ..audio import SPEECH_RMS, rms

SLICE_S = 0.02  # the energy is read per 20 ms, the precision of both edges
NOISE_SLICES = 250  # the noise floor: the quietest tenth of the last ~5 s of slices
FLOOR_EVERY = 25  # re-estimated every 0.5 s, not per slice (a percentile is costly)
ABOVE_NOISE = 4.0  # loud = 12 dB above that floor (and above SPEECH_RMS)
# the energy's end of speech is trusted only this close to the model's (speech quieter than
# SPEECH_RMS, or noise near the threshold, would date it anywhere)
AGREE_S = 0.2


class OnsetVAD(vad.VAD):
    def __init__(self, model: vad.VAD, *, confirm_s: float = 0.25, listen_s: float = 3.0) -> None:
        super().__init__(capabilities=model.capabilities)
        self._model = model
        self._confirm_s = confirm_s
        self._listen_s = listen_s

    @property
    def model(self) -> str:
        return f"onset+{self._model.model}"

    @property
    def provider(self) -> str:
        return self._model.provider

    def stream(self) -> OnsetVADStream:
        return OnsetVADStream(self, self._model.stream(), self._confirm_s, self._listen_s)


class OnsetVADStream(vad.VADStream):
    def __init__(
        self, owner: OnsetVAD, model: vad.VADStream, confirm_s: float, listen_s: float
    ) -> None:
        self._model = model
        self._confirm_s = confirm_s
        self._listen_s = listen_s
        self._now = 0.0  # seconds of audio received
        self._last_loud = 0.0  # audio time at the end of the last loud frame
        self._rms: deque[float] = deque(maxlen=NOISE_SLICES)
        self._slices = 0
        self._floor = 0.0
        self._speaking = False  # as reported downstream
        self._speech_end = 0.0  # audio time the last reported speech ended (energy)
        self._ended_at: float | None = None  # audio time of the last reported end of speech
        self._onset_at: float | None = None  # an energy onset awaiting the model's START
        super().__init__(owner)

    async def _main_task(self) -> None:
        forward = asyncio.create_task(self._forward_input())
        try:
            async for ev in self._model:
                self._on_model_event(ev)
        finally:
            await utils.aio.cancel_and_wait(forward)
            await self._model.aclose()

    async def _forward_input(self) -> None:
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                self._model.flush()
                continue
            self._on_frame(item)
            self._model.push_frame(item)
        self._model.end_input()

    def _loud(self, level: float) -> bool:
        self._rms.append(level)
        self._slices += 1
        if self._slices % FLOOR_EVERY == 1:
            self._floor = float(np.percentile(self._rms, 10))
        return level >= max(SPEECH_RMS, ABOVE_NOISE * self._floor)

    def _on_frame(self, frame: rtc.AudioFrame) -> None:
        """Each SLICE_S of the frame in turn: the call's audio comes in longer frames (40 ms)
        than the edges are dated to."""
        pcm = np.frombuffer(frame.data, np.int16).astype(np.float32) / 32768.0
        step = max(1, int(SLICE_S * frame.sample_rate)) * frame.num_channels
        for start in range(0, len(pcm), step):
            piece = pcm[start : start + step]
            self._on_slice(rms(piece), frame, len(piece))

    def _on_slice(self, level: float, frame: rtc.AudioFrame, samples: int) -> None:
        loud = self._loud(level)
        self._now += samples / frame.num_channels / frame.sample_rate
        if loud:
            self._last_loud = self._now
        if self._onset_at is not None and self._now - self._onset_at >= self._confirm_s:
            self._onset_at = None  # the model never heard speech in it: the pause goes on
            self._end_speech(self._speech_end)
        elif (
            loud
            and not self._speaking
            and self._ended_at is not None
            and self._now - self._ended_at <= self._listen_s
        ):
            self._onset_at = self._now
            self._speaking = True
            duration = samples / frame.num_channels / frame.sample_rate
            self._send(
                vad.VADEvent(
                    type=vad.VADEventType.START_OF_SPEECH,
                    samples_index=int(self._now * frame.sample_rate),
                    timestamp=self._now,
                    speech_duration=duration,
                    silence_duration=0.0,
                    frames=[frame],
                    speaking=True,
                )
            )

    def _end_speech(self, ended: float, ev: vad.VADEvent | None = None) -> None:
        self._speaking = False
        silence = max(0.0, self._now - ended)
        if ev is not None:
            ev = replace(ev, timestamp=self._now, silence_duration=silence, inference_duration=0.0)
        else:
            ev = vad.VADEvent(
                type=vad.VADEventType.END_OF_SPEECH,
                samples_index=0,
                timestamp=self._now,
                speech_duration=0.0,
                silence_duration=silence,
            )
        self._send(ev)

    def _send(self, ev: vad.VADEvent) -> None:
        with contextlib.suppress(utils.aio.ChanClosed):
            self._event_ch.send_nowait(ev)

    def _on_model_event(self, ev: vad.VADEvent) -> None:
        if ev.type == vad.VADEventType.START_OF_SPEECH:
            self._onset_at = None  # confirmed
            if self._speaking:
                return  # already reported at the onset
            self._speaking = True
        elif ev.type == vad.VADEventType.END_OF_SPEECH:
            self._onset_at = None
            said = self._now - ev.silence_duration  # the model's own end of speech
            energy = min(self._last_loud, self._now)
            self._speech_end = energy if abs(energy - said) <= AGREE_S else said
            self._ended_at = self._now  # not moved by a take-back: noise cannot keep it open
            self._end_speech(self._speech_end, ev)
            return
        self._send(ev)
