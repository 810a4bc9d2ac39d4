"""Every language through a real call, and `multi`: one table of WER, language detection and
end of speech -> final transcript, per engine and language.

- Calls, through a real livekit-server and the worker on its local defaults: en, de, es and fr
  (the caller's `language` attribute, what the page's picker sets, so `local/auto` picks the
  engine: Moonshine tiny-en for English, Whisper base for the others), English on Whisper base
  for comparison, and a mixed-language `multi` call (en -> de -> es -> en, LANGUAGES=en,de,es)
  whose rows add how often each utterance's language was detected right.
- Offline, on the same audio without a call: language detection per language, the call's way
  (the first DETECT_SECONDS) and off the final's own encoder pass, among any of Whisper's
  languages and among en,de,es,fr; WER and decode time of Whisper base with its encoder padded
  to 30 s (faster-whisper's window, what calls used) against ENCODER_SECONDS (what calls use
  now); and end of speech -> final with each utterance streamed in real time into the STT, the
  old way against now, back to back (a fair comparison on a machine whose load varies).

The audio: the same eight everyday sentences per language spoken by espeak-ng's voice for the
language (tools/sentences.py); the `voice` column says so, and the English rows marked
"hibari" are spoken by the bundled Hibari voice. Synthesized speech: a person is understood
better, so the WER is pessimistic.

    uv run python -m benchmarks.languages [--sentences 8] [--out benchmarks/results] [--no-calls]

Prints JSON and writes languages.json and languages.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents import stt

from agent import switching
from agent.audio import ENGINE_RATE
from agent.plugins import whisper
from agent.plugins.whisper import (
    DETECT_SECONDS,
    ENCODER_SECONDS,
    MAX_COMPRESSION_RATIO,
    MULTI,
    WhisperBaseSTT,
    load_model,
)
from tools import sentences, stack
from tools.caller import Caller, synthesize
from tools.wer import wer

from .latency import percentiles

# (label, the caller's attributes); the engine is what the agent publishes as stt_active
CALLS = (
    ("en", {"language": "en"}),
    ("en (Whisper base)", {"stt": "local/whisper-base", "language": "en"}),
    ("de", {"language": "de"}),
    ("es", {"language": "es"}),
    ("fr", {"language": "fr"}),
)
# the mixed-language call: its dispatch metadata, and the languages its caller speaks in turn
MIXED = {"language": MULTI, "languages": "en,de,es"}
MIXED_ORDER = ("en", "de", "es", "en")
VOICE = "espeak-ng"  # every sentence's voice, but where a row says otherwise


async def agent_stt(caller: Caller, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in caller.room.remote_participants.values():
            if p.attributes.get("stt_active"):
                return p.attributes["stt_active"]
        await asyncio.sleep(0.1)
    return "?"


async def settle(caller: Caller, quiet: float = 2.0, timeout: float = 20) -> None:
    """Wait until no user transcript came for `quiet` seconds: a late final of this utterance
    belongs to it, not to the next one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        finals = caller.user_finals()
        if not finals or time.time() - finals[-1].at >= quiet:
            return
        await asyncio.sleep(0.1)


class HibariSample(sentences.Sample):
    def pcm48k(self) -> np.ndarray:
        return synthesize(self.text)  # the bundled Hibari voice


def language_messages(caller: Caller) -> list[dict]:
    """The language of each final user transcript, as the agent sends it to the page."""
    heard: list[dict] = []

    def on_stream(reader, identity: str) -> None:
        async def read() -> None:
            heard.append(json.loads(await reader.read_all()))

        caller._spawn(read())

    caller.room.register_text_stream_handler(switching.LANGUAGE_TOPIC, on_stream)
    return heard


async def one_call(
    server, worker, label: str, spoken: list[sentences.Sample], attributes=None, metadata=None
) -> dict:
    """Say each sample in one call; per utterance its WER, its latency and the language the
    agent detected (in a `multi` call)."""
    rows = []
    async with Caller(
        server.url,
        stack.API_KEY,
        stack.API_SECRET,
        worker.agent_name,
        attributes=attributes or {},
        metadata=json.dumps(metadata) if metadata else "",
    ) as caller:
        heard_languages = language_messages(caller)
        await caller.wait_for_greeting(timeout=180)
        stt = await agent_stt(caller)
        for sample in spoken:
            before, languages_before = len(caller.user_finals()), len(heard_languages)
            turn = await caller.say(sample.text, sample.pcm48k(), timeout=60)
            await settle(caller)
            finals = caller.user_finals()[before:]
            heard = " ".join(f.text for f in finals)
            detected = [h["language"] for h in heard_languages[languages_before:]]
            rows.append(
                {
                    "language": sample.language,
                    "said": sample.text,
                    "heard": heard,
                    "detected": detected,
                    "wer": round(wer(sample.text, heard), 3),
                    # the last final of the utterance: when the whole of it is transcribed
                    "to_final_transcript_s": round(finals[-1].at - turn.speech_end, 3)
                    if finals
                    else None,
                    "agent_said": " ".join(turn.agent_texts),
                }
            )
            print(json.dumps({"call": label, **rows[-1]}, ensure_ascii=False), flush=True)
    return {"call": label, "stt": stt, "utterances": rows}


def call_rows(call: dict, voice: str = VOICE) -> list[dict]:
    """One table row per language of a call: WER, finals latency, detection when multi."""
    table = []
    for language in dict.fromkeys(r["language"] for r in call["utterances"]):
        rows = [r for r in call["utterances"] if r["language"] == language]
        multi = call["stt"].endswith(f":{MULTI}")
        table.append(
            {
                "what": f"call: {call['call']}",
                "engine": call["stt"].split(":")[0].removeprefix("local/"),
                "language": language,
                "voice": voice,
                "wer": round(float(np.mean([r["wer"] for r in rows])), 3),
                "to_final_transcript_s": percentiles([r["to_final_transcript_s"] for r in rows]),
                "detected_right": round(
                    float(np.mean([r["detected"][-1:] == [language] for r in rows])), 3
                )
                if multi
                else None,
            }
        )
    return table


def offline_rows(count: int) -> list[dict]:
    """Detection accuracy of the call path's decode, and the encoder's padding: 30 s (the
    old call path, faster-whisper's window) against ENCODER_SECONDS."""
    model = load_model("whisper-base")
    table = []
    for language in sentences.LANGUAGES:
        audio = [s.samples() for s in sentences.samples(language)[:count]]
        texts = [s.text for s in sentences.samples(language)[:count]]
        # the call path (the first DETECT_SECONDS, encoded padded to 30 s) against reading it
        # off the final's own encoder pass (the whole utterance, padded to ENCODER_SECONDS)
        ways = {
            f"first {DETECT_SECONDS:g} s, padded to 30 s": lambda a, c: model.language_of(
                a[: int(DETECT_SECONDS * ENGINE_RATE)], c
            ),
            f"whole utterance, padded to {ENCODER_SECONDS:g} s": lambda a, c: (
                model.hear(a, MULTI, c).language
            ),
        }
        for way, detect in ways.items():
            for candidates in ((), sentences.LANGUAGES):
                among = ",".join(candidates) if candidates else "all 100"
                found = [detect(a, candidates) == language for a in audio]
                table.append(
                    {
                        "what": f"detection, offline, {way}, among {among}",
                        "engine": "whisper-base",
                        "language": language,
                        "voice": VOICE,
                        "detected_right": round(float(np.mean(found)), 3),
                    }
                )
        for padding, decode in (
            ("30 s", lambda a, lang=language: model.decode(a, lang)),
            (f"{ENCODER_SECONDS:g} s", lambda a, lang=language: model.hear(a, lang).segments),
        ):
            werrs, seconds = [], []
            for a, text in zip(audio, texts, strict=True):
                start = time.perf_counter()
                segments = decode(a)
                seconds.append(time.perf_counter() - start)
                werrs.append(wer(text, " ".join(s.text for s in segments)))
            table.append(
                {
                    "what": f"decode, offline, encoder padded to {padding}",
                    "engine": "whisper-base",
                    "language": language,
                    "voice": VOICE,
                    "wer": round(float(np.mean(werrs)), 3),
                    "decode_s": percentiles(seconds),
                }
            )
    return table


async def replay_final(audio: np.ndarray, language: str) -> float:
    """Stream one utterance into Whisper base in real time (20 ms frames, then silence) and
    return end of speech -> final transcript."""
    stream = WhisperBaseSTT(language=language).stream()
    finals: list[float] = []

    async def listen() -> None:
        async for ev in stream:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                finals.append(time.perf_counter())

    listening = asyncio.create_task(listen())
    padded = np.concatenate([audio, np.zeros(int(2.0 * ENGINE_RATE), np.float32)])
    pcm = (np.clip(padded, -1, 1) * 32767).astype(np.int16)
    step = ENGINE_RATE // 50
    start = time.perf_counter()
    for i in range(0, len(pcm) - step + 1, step):
        await asyncio.sleep(max(0.0, start + i / ENGINE_RATE - time.perf_counter()))
        stream.push_frame(rtc.AudioFrame(pcm[i : i + step].tobytes(), ENGINE_RATE, 1, step))
    stream.end_input()
    await listening
    speech_end = start + len(audio) / ENGINE_RATE
    return finals[-1] - speech_end if finals else float("nan")


def replay_rows(count: int) -> list[dict]:
    """End of speech -> final of Whisper base without a call (no server, no other process):
    the utterance streamed in real time into the STT, the way calls decoded before (encoder
    padded to 30 s, interims until the VAD ends the segment, the final only then) against now,
    back to back on the same machine, so the two see the same load."""
    before = {"ENCODER_SECONDS": 30.0, "EARLY_FINAL_SILENCE": float("inf")}
    table = []
    for language in ("de", "es"):
        audio = [s.samples() for s in sentences.samples(language)[:count]]
        for label, patch in (("before: 30 s, final at the VAD's end", before), ("now", {})):
            saved = {k: getattr(whisper, k) for k in patch}
            vars(whisper).update(patch)
            try:
                latencies = [asyncio.run(replay_final(a, language)) for a in audio]
            finally:
                vars(whisper).update(saved)
            table.append(
                {
                    "what": f"stream replay, no call: {label}",
                    "engine": "whisper-base",
                    "language": language,
                    "voice": VOICE,
                    "to_final_transcript_s": percentiles(latencies),
                }
            )
            print(json.dumps(table[-1]), flush=True)
    return table


def mixed_samples(count: int) -> list[sentences.Sample]:
    """MIXED_ORDER's languages in turn, `count` sentences each (a different one each time)."""
    spoken, used = [], {}
    for language in MIXED_ORDER:
        start = used.get(language, 0)
        spoken += sentences.samples(language)[start : start + count]
        used[language] = start + count
    return spoken


def plot(table: list[dict], path: Path) -> None:
    """The table, as a figure: one line per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def seconds(value) -> str:
        return f"{value['p50']:.2f} / {value['p95']:.2f}" if value and value["p50"] else ""

    columns = ("what", "engine", "lang", "voice", "WER", "detected", "final p50/p95 s", "decode")
    cells = [
        [
            r["what"],
            r["engine"],
            r["language"],
            r["voice"],
            "" if r.get("wer") is None else f"{r['wer']:.2f}",
            "" if r.get("detected_right") is None else f"{r['detected_right']:.0%}",
            seconds(r.get("to_final_transcript_s")),
            seconds(r.get("decode_s")),
        ]
        for r in table
    ]
    fig, ax = plt.subplots(figsize=(14, 0.3 * len(cells) + 1))
    ax.axis("off")
    grid = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="left")
    grid.auto_set_font_size(False)
    grid.set_fontsize(8)
    grid.auto_set_column_width(list(range(len(columns))))
    ax.set_title("Languages: WER, detection, end of speech -> final transcript (2 cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=8, help="per language (at most 8)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--no-calls", action="store_true", help="only what runs without a call")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = offline_rows(args.sentences) + replay_rows(args.sentences)
    print(json.dumps(table, indent=2), flush=True)
    n = args.sentences
    calls = [(label, sentences.samples(a["language"])[:n], a, None) for label, a in CALLS]
    # English in the bundled Hibari voice too: Moonshine or Whisper for English in multi
    hibari = [HibariSample("en", s.text) for s in sentences.samples("en")[:n]]
    calls += [
        ("en, Hibari's voice", hibari, {"language": "en"}, None),
        ("en (Whisper base), Hibari's voice", hibari, CALLS[1][1], None),
        ("multi: en -> de -> es -> en", mixed_samples(max(1, n // 4)), None, MIXED),
    ]

    if args.no_calls:
        calls = []
    server = stack.start_server("bench-languages-livekit-server")
    try:
        for label, spoken, attributes, metadata in calls:
            # a fresh worker per call: livekit-server holds a dispatch while a worker reports
            # high load, which a busy 2-core machine does right after the previous call
            try:
                worker = stack.start_worker(server, name="bench-languages-worker")
            except TimeoutError:
                print(f"{label}: the worker did not start (busy machine?); skipped", flush=True)
                continue
            try:
                call = asyncio.run(one_call(server, worker, label, spoken, attributes, metadata))
                table += call_rows(call, "hibari" if "Hibari" in label else VOICE)
            except TimeoutError:
                print(f"{label}: the agent never answered (dispatch held?); skipped", flush=True)
            finally:
                stack.stop(worker.process)
    finally:
        stack.stop(server.process)

    summary = {
        "audio": "the same sentences per language, espeak-ng voices unless the voice says "
        "hibari (tools/sentences.py)",
        "stack": "worker on its local defaults (local/auto), language from the caller's "
        "attribute; multi from the dispatch metadata",
        "whisper": {
            "model": "Whisper base multilingual, int8, beam 1, temperature 0",
            "encoder_seconds": ENCODER_SECONDS,
            "interim_every_s": 1.0,
            "vad_min_silence_s": 0.4,
            "max_compression_ratio": MAX_COMPRESSION_RATIO,
        },
        "table": table,
    }
    (out / "languages.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    plot(table, out / "languages.png")
    print(json.dumps(table, indent=2, ensure_ascii=False))
    print(f"wrote {out / 'languages.json'} and {out / 'languages.png'}")


if __name__ == "__main__":
    main()
