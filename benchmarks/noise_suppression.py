"""Does an offline noise suppressor help the local STT? RNNoise (`pyrnnoise`, its model inside
the wheel) in front of Moonshine, on the latency benchmark's sentences with white and brown
noise mixed in at 10, 5 and 0 dB SNR: word error rate with and without it.

    uv run --with pyrnnoise==0.4.5 python -m benchmarks.noise_suppression [--out benchmarks/results]

pyrnnoise is not a project dependency: this measurement is why (results: benchmarks/README.md).
Prints JSON and writes noise_suppression.{json,png}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agent.audio import resample
from agent.plugins.moonshine import load_transcriber
from benchmarks.latency import PAUSED, UTTERANCES
from tools.caller import SAMPLE_RATE, synthesize
from tools.wer import wer

SNRS = (10, 5, 0)


def noises(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(480) / 480, "same")  # no drift below ~100 Hz
    return {"white": rng.standard_normal(n), "brown": brown}


def rnnoise(pcm: np.ndarray) -> np.ndarray:
    """48 kHz int16 through RNNoise, 10 ms at a time (its frame)."""
    from pyrnnoise import rnnoise as rn

    state = rn.create()
    try:
        frames = [
            rn.process_mono_frame(state, pcm[i : i + rn.FRAME_SIZE])[0]
            for i in range(0, len(pcm) - rn.FRAME_SIZE + 1, rn.FRAME_SIZE)
        ]
    finally:
        rn.destroy(state)
    return np.concatenate(frames)


def transcribe(pcm48k: np.ndarray) -> str:
    samples = resample(pcm48k, SAMPLE_RATE, 16000).astype(np.float32) / 32768
    lines = load_transcriber().transcribe_without_streaming(samples.tolist(), 16000).lines
    return " ".join(line.text.strip() for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    errors: dict[tuple[str, int, bool], list[float]] = {}
    for text in UTTERANCES + PAUSED:
        clean = synthesize(text).astype(np.float64) / 32768
        clean = np.concatenate([np.zeros(4800), clean, np.zeros(9600)])
        power = np.mean(clean[np.abs(clean) > 0.01] ** 2)
        mixes = {("clean", 99): clean}
        for kind, noise in noises(len(clean), rng).items():
            for snr in SNRS:
                gain = np.sqrt(power / (np.mean(noise**2) * 10 ** (snr / 10)))
                mixes[(kind, snr)] = clean + gain * noise
        for (kind, snr), mix in mixes.items():
            pcm = (np.clip(mix, -1, 1) * 32767).astype(np.int16)
            for suppressed in (False, True):
                heard = transcribe(rnnoise(pcm) if suppressed else pcm)
                errors.setdefault((kind, snr, suppressed), []).append(wer(text, heard))
    rows = [
        {"noise": k, "snr_db": s, "rnnoise": r, "wer": round(float(np.mean(v)), 3), "n": len(v)}
        for (k, s, r), v in sorted(errors.items())
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_suppression.json").write_text(json.dumps(rows, indent=2))
    plot(rows, out / "noise_suppression.png")
    print(json.dumps(rows, indent=2))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({(r["noise"], r["snr_db"]) for r in rows}, key=lambda x: (x[0], -x[1]))
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(labels))
    for offset, suppressed in ((-0.2, False), (0.2, True)):
        wers = [
            next(
                r["wer"]
                for r in rows
                if (r["noise"], r["snr_db"], r["rnnoise"]) == (*lab, suppressed)
            )
            for lab in labels
        ]
        ax.bar(x + offset, wers, 0.4, label="RNNoise first" if suppressed else "as heard")
    ax.set_xticks(x, [f"{k} {s} dB" if k != "clean" else "clean" for k, s in labels])
    ax.set_ylabel("Moonshine tiny WER")
    ax.set_title("Offline noise suppression before the local STT")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
