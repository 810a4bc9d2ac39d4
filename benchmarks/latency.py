"""Turn-taking of a real call, per end-of-turn detector and per language.

For each detector in CONFIGS a worker starts on the local defaults plus its settings; for each
language a caller joins (the language from the dispatch metadata) and, through a real
livekit-server, in real time:

- talks over the greeting (0.5 s into it), and over two replies: "words lost to overlap" is
  the WER of these sentences spoken over the agent minus their WER spoken politely;
- says COMPLETE sentences politely: end of speech -> first agent audio (and WER);
- says PAUSED sentences with a 400 ms and a 700 ms pause mid-sentence: an answer that starts
  inside the pause is the agent cutting in;
- in English, also plays real read speech (Dickens, from the moonshine-voice wheel) with its
  own pauses between clauses (0.42 s and 0.60 s).

English is spoken by the bundled Hibari voice, German and Spanish by espeak-ng. The worker's
CPU (its process tree) over each call gives cores per call. The call's report (agent/reports.py)
splits the wait inside the agent: from the end of speech the agent heard to its final
transcript, its end of turn and its first audio out; the rest of the caller's wait is the
network, both ways, and the caller's jitter buffer.

    uv run python -m benchmarks.latency [--configs eot,smart-turn] [--languages en,de]

Prints one JSON line per turn and a table; writes turns.json and turns.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import psutil
from livekit import rtc

from agent import reports
from agent.audio import resample as resample_audio
from agent.plugins.moonshine import MoonshineSTT
from tests.speech import DICKENS
from tools import stack
from tools.caller import SAMPLE_RATE, Caller, insert_pause, resample, synthesize
from tools.overlap import prompt_a_reply, talk_over
from tools.wer import wer

SENTENCES = {
    "en": {
        "complete": [
            "What a lovely day it is.",
            "How far is the station from here?",
            "The meeting has been moved to Thursday morning.",
            "Can you remind me to call my sister tomorrow?",
            "Turn the lights off in the kitchen.",
        ],
        # spoken with a pause at the quietest point between 30 % and 75 % (a word boundary)
        "paused": [
            "I need a taxi to the airport at five in the morning.",
            "I would like to order a large pizza with mushrooms.",
            "We are going to visit my grandmother on Sunday.",
        ],
        # the first over the greeting, the others over a reply
        "overlap": [
            "Please book a table for two at seven tonight.",
            "Actually make that a large pot of green tea.",
            "Send the report to the whole team tonight.",
        ],
    },
    "de": {
        "complete": [
            "Was für ein schöner Tag heute ist.",
            "Wie weit ist der Bahnhof von hier?",
            "Die Besprechung wurde auf Donnerstag verschoben.",
            "Kannst du mich morgen an den Termin erinnern?",
            "Mach bitte das Licht in der Küche aus.",
        ],
        "paused": [
            "Ich brauche morgen früh ein Taxi zum Flughafen.",
            "Wir besuchen am Sonntag meine Großmutter auf dem Land.",
            "Ich möchte eine große Pizza mit Pilzen bestellen.",
        ],
        "overlap": [
            "Der Zug nach Hamburg fährt heute eine Stunde später ab.",
            "Nein, lieber am Abend um sieben Uhr.",
            "Schick den Bericht heute Abend an das ganze Team.",
        ],
    },
    "es": {
        "complete": [
            "Qué día tan bonito hace hoy.",
            "A qué distancia está la estación?",
            "La reunión se ha movido al jueves por la mañana.",
            "Puedes recordarme que llame a mi hermana mañana?",
            "Apaga las luces de la cocina.",
        ],
        "paused": [
            "Necesito un taxi al aeropuerto a las cinco de la mañana.",
            "Quiero pedir una pizza grande con champiñones.",
            "Vamos a visitar a mi abuela el domingo por la tarde.",
        ],
        "overlap": [
            "Mañana vamos a visitar a mis abuelos en el campo.",
            "No, mejor por la noche a las siete.",
            "Envía el informe a todo el equipo esta noche.",
        ],
    },
}
# English sentences of benchmarks/noise_suppression.py
UTTERANCES = [
    "What a lovely day it is.",
    "Please book a table for two at seven.",
    "How far is the station from here?",
    "I would like a cup of coffee with milk.",
    "The meeting has been moved to Thursday morning.",
    "Can you remind me to call my sister tomorrow?",
    "My flight leaves at half past nine.",
    "Turn the lights off in the kitchen.",
    "What is the weather going to be like this weekend?",
    "I left my keys on the table by the door.",
    "Send the report to the whole team tonight.",
    "We need more chairs for the party.",
]
# spoken with a pause in the middle (at the quietest point between 30 % and 75 % of the audio,
# a word boundary): "I need a taxi to the airport | at five in the morning."
PAUSED = [
    "I need a taxi to the airport at five in the morning.",
    "Remind me to water the plants when I get home.",
    "I would like to order a large pizza with mushrooms.",
    "Could you play some relaxing music in the living room?",
    "We are going to visit my grandmother on Sunday.",
    "Please book a table for two people at seven tonight.",
]
PAUSES_S = (0.4, 0.7)
# real read speech with its own pauses: (start, end) in the recording, the text, and where its
# pause is (start, length), all in seconds
DICKENS_CLAUSES = [
    ((0.0, 4.26), "It was the best of times, it was the worst of times,", (2.56, 0.42)),
    ((4.99, 7.86), "it was the age of wisdom, it was the age of foolishness,", (6.12, 0.60)),
]

# name -> settings (environment variables) over the local defaults
CONFIGS: dict[str, dict[str, str]] = {
    "eot": {"TURN_DETECTION": "eot"},  # LiveKit's v1-mini, 0.45 / 0.8 s
    "vad": {"TURN_DETECTION": "vad"},  # silence alone, 0.45 s
    "stt": {"TURN_DETECTION": "stt"},  # the STT's own end of speech
    "smart-turn": {"TURN_DETECTION": "smart-turn"},  # 0.45 / 0.8 s
    # Smart Turn answering sooner when it is sure the caller is done
    "smart-turn-0.3": {"TURN_DETECTION": "smart-turn", "MIN_ENDPOINTING_DELAY": "0.3"},
}


def percentiles(values: list[float]) -> dict[str, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"p50": None, "p95": None, "n": 0}
    return {
        "p50": round(float(np.percentile(values, 50)), 3),
        "p95": round(float(np.percentile(values, 95)), 3),
        "n": len(values),
    }


async def decode_time(pcm48k: np.ndarray) -> float:
    pcm = resample(pcm48k, SAMPLE_RATE, 16000)
    frame = rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))
    stt = MoonshineSTT()
    await stt.recognize([frame])  # warm
    start = time.perf_counter()
    await stt.recognize([frame])
    return time.perf_counter() - start


def loud(pcm: np.ndarray) -> bool:
    return bool(len(pcm)) and float(np.sqrt(np.mean(pcm**2))) > 0.01


def since(t: float | None, start: float) -> float | None:
    return round(t - start, 3) if t else None


def conditions() -> dict:
    load = os.getloadavg()
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_1_5_15": [round(x, 2) for x in load],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def recording(path: Path, start: float, end: float) -> np.ndarray:
    """A slice of a WAV file as 48 kHz int16 (the caller's rate)."""
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, channels)[:, 0]
    return resample_audio(pcm[int(start * rate) : int(end * rate)], rate, SAMPLE_RATE)


def smart_turn_offline() -> dict:
    """Smart Turn's own verdicts, without a call (no CPU contention): per language, how many
    of the PAUSED sentences it calls finished at their pause (0.2 s into it, when LiveKit asks)
    and at their end."""
    from agent.plugins import smart_turn

    model, out = smart_turn.load(), {}
    tail = np.zeros(int(0.2 * 16000), np.float32)

    def done(pcm: np.ndarray) -> bool:
        audio = resample_audio(pcm, SAMPLE_RATE).astype(np.float32) / 32768
        return model.probability(np.concatenate([audio, tail])) > smart_turn.THRESHOLD

    def verdicts(speech: list[np.ndarray], pauses: list[float]) -> dict[str, str]:
        at_pause = [
            done(pcm[: int(at * SAMPLE_RATE)]) for pcm, at in zip(speech, pauses, strict=True)
        ]
        return {
            "done_at_pause": f"{sum(at_pause)}/{len(speech)}",
            "done_at_end": f"{sum(done(pcm) for pcm in speech)}/{len(speech)}",
        }

    for language, said in SENTENCES.items():
        speech = [synthesize(text, language) for text in said["paused"] + said["complete"]]
        out[language] = verdicts(speech, [insert_pause(pcm, PAUSES_S[0])[1] for pcm in speech])
    out["en-recorded"] = verdicts(
        [recording(DICKENS, start, end) for (start, end), _, _ in DICKENS_CLAUSES],
        [at - start for (start, _), _, (at, _) in DICKENS_CLAUSES],
    )
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (a worker forks one process per call)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


async def paused_turn(caller: Caller, text: str, pcm: np.ndarray, pause: tuple[float, float]):
    """Say `pcm` (its pause at `pause` = (start, length) s) and whether the agent cut in."""
    started = time.time()
    turn = await caller.say(text, pcm)
    at = started + pause[0]
    early = [t for t, f in caller.agent_frames if at < t < turn.speech_end and loud(f)]
    heard = turn.user_final.text if turn.user_final else ""
    return {
        "kind": "paused",
        "utterance": text,
        "pause_s": pause[1],
        "cut_in": bool(early),
        "cut_in_after_pause_start_s": round(early[0] - at, 3) if early else None,
        "answers": len(turn.agent_texts),
        "to_first_agent_audio_s": since(turn.first_agent_audio, turn.speech_end),
        "wer": round(wer(text, heard), 3) if heard else 1.0,
    }


AGENT_STAGES = ("final_transcript", "end_of_turn", "first_audio_out")


def agent_stages(folder: Path, room: str, timeout: float = 20.0) -> dict:
    """p50/p95 of each of AGENT_STAGES over the call's answered turns, in seconds after the
    agent heard the caller stop (its report is written once the call has ended)."""
    deadline = time.time() + timeout
    while (report := reports.find(folder, room)) is None and time.time() < deadline:
        time.sleep(0.5)
    answered = [t for t in (report or {}).get("turns", []) if t["user"] and t["stages"]]
    return {stage: percentiles([t["stages"][stage] for t in answered]) for stage in AGENT_STAGES}


async def run_call(server_url: str, agent_name: str, language: str) -> tuple[str, list[dict]]:
    said = SENTENCES[language]
    metadata = json.dumps({"language": language}) if language != "en" else ""
    rows: list[dict] = []

    def log(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)

    def overlap_row(heard, where: str) -> dict:
        return {
            "kind": "overlap",
            "over": where,
            "utterance": heard.said,
            "transcript": heard.transcript,
            "wer": round(wer(heard.said, heard.transcript), 3) if heard.transcript else 1.0,
            "interrupted": heard.interrupted,
            "to_first_agent_audio_s": since(heard.first_agent_audio, heard.speech_end),
        }

    async with Caller(
        server_url, stack.API_KEY, stack.API_SECRET, agent_name, metadata=metadata
    ) as caller:
        log(overlap_row(await talk_over(caller, said["overlap"][0], language), "greeting"))
        for text in said["overlap"][1:]:
            await prompt_a_reply(caller, said["complete"][0], language)  # talked over
            log(overlap_row(await talk_over(caller, text, language), "reply"))
        await caller.wait_until_quiet(2.0)
        # the same sentences, politely
        for kind in ("overlap", "complete"):
            for text in said[kind]:
                turn = await caller.say(text, synthesize(text, language))
                heard = turn.user_final.text if turn.user_final else ""
                log(
                    {
                        "kind": "polite" if kind == "overlap" else "complete",
                        "utterance": text,
                        "transcript": heard,
                        "wer": round(wer(text, heard), 3) if heard else 1.0,
                        "to_first_agent_audio_s": since(turn.first_agent_audio, turn.speech_end),
                    }
                )
        for seconds in PAUSES_S:
            for text in said["paused"]:
                pcm, at = insert_pause(synthesize(text, language), seconds)
                log(await paused_turn(caller, text, pcm, (at, seconds)))
        if language == "en":
            for (start, end), text, (at, seconds) in DICKENS_CLAUSES:
                row = await paused_turn(
                    caller, text, recording(DICKENS, start, end), (at - start, seconds)
                )
                log(row | {"kind": "recorded"})
    return caller.room_name, rows


def summarize(
    name: str, language: str, env: dict[str, str], rows: list, cores: float, stages: dict
) -> dict:
    def of(*kinds: str) -> list[dict]:
        return [r for r in rows if r["kind"] in kinds]

    overlap, polite = of("overlap"), of("polite")
    paused = of("paused", "recorded")
    ends = of("complete", "polite") + [r for r in paused if not r["cut_in"]]
    return {
        "config": name,
        "language": language,
        "settings": env,
        "to_first_agent_audio_s": percentiles([r["to_first_agent_audio_s"] for r in ends]),
        "answers_into_pause": {
            f"{int(s * 1000)}ms": f"{sum(r['cut_in'] for r in of('paused') if r['pause_s'] == s)}"
            f"/{sum(r['pause_s'] == s for r in of('paused'))}"
            for s in PAUSES_S
        }
        | (
            {"recorded": f"{sum(r['cut_in'] for r in of('recorded'))}/{len(of('recorded'))}"}
            if of("recorded")
            else {}
        ),
        "wer_polite": round(float(np.mean([r["wer"] for r in polite])), 3),
        "wer_overlap": round(float(np.mean([r["wer"] for r in overlap])), 3),
        "overlap_interrupted": f"{sum(r['interrupted'] for r in overlap)}/{len(overlap)}",
        "cores_per_call": round(cores, 3),
        "agent_stages_s": stages,
        "turns": rows,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| detector | lang | first audio p50 | p95 | in the agent: final / end of turn / "
        "audio out, p50 | answers into 400 / 700 ms pause | recorded pauses | "
        "WER polite -> over the agent | agent stopped | cores/call |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        audio, into = r["to_first_agent_audio_s"], r["answers_into_pause"]
        inside = " / ".join(str(r["agent_stages_s"][s]["p50"]) for s in AGENT_STAGES)
        lines.append(
            f"| {r['config']} | {r['language']} | {audio['p50']} | {audio['p95']} | {inside} | "
            f"{into['400ms']} / {into['700ms']} | {into.get('recorded', '-')} | "
            f"{r['wer_polite']} -> {r['wer_overlap']} | {r['overlap_interrupted']} | "
            f"{r['cores_per_call']} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 5))
    labels = []
    for r in results:  # each box's detector, language, answers into a pause, WER over the agent
        into = r["answers_into_pause"]
        labels.append(
            f"{r['config']}\n{r['language']}\npause {into['400ms']}|{into['700ms']}\n"
            f"WER {r['wer_overlap'] - r['wer_polite']:+.2f}"
        )
    data = [
        [
            t["to_first_agent_audio_s"]
            for t in r["turns"]
            if t["to_first_agent_audio_s"] and t["kind"] in ("complete", "polite")
        ]
        or [0.0]
        for r in results
    ]
    ax.boxplot(data, whis=(5, 95))
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.axhline(0.5, color="green", ls="--", lw=1, label="p50 target 0.5 s")
    ax.axhline(0.8, color="orange", ls="--", lw=1, label="p95 target 0.8 s")
    ax.set_ylabel("end of caller speech -> first agent audio (s)")
    ax.set_title("End of turn per detector and language (one call each, local stack, 2-core host)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    parser.add_argument("--languages", default=",".join(SENTENCES))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    languages = [n.strip() for n in args.languages.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS] + [n for n in languages if n not in SENTENCES]
    if unknown:
        raise SystemExit(f"error: unknown {unknown}; known: {', '.join([*CONFIGS, *SENTENCES])}")

    summary = {"conditions": conditions(), "results": []}
    summary["stt_decode_s"] = percentiles(
        [asyncio.run(decode_time(synthesize(t))) for t in SENTENCES["en"]["complete"][:3]]
    )
    summary["smart_turn_offline"] = smart_turn_offline()
    print(json.dumps({"smart_turn_offline": summary["smart_turn_offline"]}), flush=True)
    server = stack.start_server("bench-livekit-server")
    calls = Path(tempfile.mkdtemp(prefix="turn-reports-"))  # the workers' call reports
    try:
        for name in names:
            env = CONFIGS[name]
            worker = stack.start_worker(
                server, env | {"CALL_REPORTS_DIR": str(calls)}, name=f"bench-{name}"
            )
            try:
                for language in languages:
                    cpu, wall = cpu_seconds(worker.process.pid), time.time()
                    try:
                        room, rows = asyncio.run(run_call(server.url, worker.agent_name, language))
                    except Exception as e:  # one failed call is reported, the others still run
                        print(f"{name} {language}: {type(e).__name__}: {e}", flush=True)
                        summary.setdefault("failed", []).append(f"{name} {language}: {e}")
                        continue
                    cores = (cpu_seconds(worker.process.pid) - cpu) / (time.time() - wall)
                    stages = agent_stages(calls, room)
                    summary["results"].append(summarize(name, language, env, rows, cores, stages))
                    print(table(summary["results"][-1:]), flush=True)
                    # after every call: a run cut short keeps what it measured
                    (out / "turns.json").write_text(json.dumps(summary, indent=2))
            finally:
                stack.stop(worker.process)
    finally:
        stack.stop(server.process)
    summary["conditions"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "turns.json").write_text(json.dumps(summary, indent=2))
    plot(summary["results"], out / "turns.png")
    print(json.dumps(summary["conditions"]))
    print(table(summary["results"]))
    print(f"wrote {out / 'turns.json'} and {out / 'turns.png'}")


if __name__ == "__main__":
    main()
