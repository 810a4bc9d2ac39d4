"""`python -m agent bench-stt --refs refs.tsv [FILE...]`: compare STT descriptors on the same files.

    python -m agent bench-stt --refs refs.tsv --stt local/moonshine-tiny:en,local/whisper-tiny:en

refs.tsv has one line per file: `path<TAB>reference text` (paths relative to the TSV; `#` starts
a comment). With no FILE, every file in refs.tsv is used. For each descriptor it prints the
word error rate (case and punctuation ignored, over all files together) and the processing time
per second of audio (model loading excluded, shown apart), then writes the figures as JSON and
a bar chart.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jiwer

from agent import audio_files, config
from agent.config import Settings
from agent.errors import ConfigError

from .transcribe import add_audio_arguments, make_engine, stt_descriptor
from .wer import normalize

DEFAULT_STT = "local/moonshine-tiny:en,local/whisper-tiny:en"


def read_refs(path: Path) -> dict[Path, str]:
    if not path.is_file():
        raise ConfigError(f"--refs {path}: no such file")
    refs = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, tab, text = line.partition("\t")
        if not tab or not text.strip():
            raise ConfigError(f"{path}:{n}: expected `file<TAB>reference text`, got {line!r}")
        refs[(path.parent / name.strip()).resolve()] = text.strip()
    if not refs:
        raise ConfigError(f"{path} lists no files")
    return refs


def reference_for(refs: dict[Path, str], file: Path) -> str:
    """A file's reference, by path or, failing that, by its name alone."""
    if file.resolve() in refs:
        return refs[file.resolve()]
    by_name = [text for p, text in refs.items() if p.name == file.name]
    if len(by_name) != 1:
        raise ConfigError(f"{file}: no reference in --refs (add a line `{file.name}<TAB>text`)")
    return by_name[0]


def bench(descriptors, audios, references, settings, api="cartesia", base_url="") -> list[dict]:
    results = []
    for desc in descriptors:
        started = time.perf_counter()
        engine = make_engine(desc, settings, api, base_url)
        load = time.perf_counter() - started
        files, busy = [], 0.0
        for audio in audios:
            started = time.perf_counter()
            hyp = engine.transcribe(audio, desc.variant, False, lambda s: None).text
            took = time.perf_counter() - started
            busy += took
            files.append({"file": str(audio.path), "hypothesis": hyp, "seconds": round(took, 3)})
        refs = [normalize(r) for r in references]
        hyps = [normalize(f["hypothesis"]) for f in files]
        audio_seconds = sum(a.duration for a in audios)
        results.append(
            {
                "stt": str(desc),
                "wer": round(jiwer.wer(refs, hyps), 4),
                "seconds_per_audio_second": round(busy / audio_seconds, 4),
                "load_seconds": round(load, 3),
                "audio_seconds": round(audio_seconds, 3),
                "files": files,
            }
        )
    return results


def print_table(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="STT benchmark")
    for column in ("STT", "WER", "s per audio s", "load s", "audio s"):
        table.add_column(column, justify="left" if column == "STT" else "right")
    for r in results:
        table.add_row(
            r["stt"],
            f"{100 * r['wer']:.1f}%",
            f"{r['seconds_per_audio_second']:.3f}",
            f"{r['load_seconds']:.2f}",
            f"{r['audio_seconds']:.1f}",
        )
    Console().print(table)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = [r["stt"] for r in results]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, 0.6 * len(names) + 2), layout="constrained"
    )
    left.barh(names, [100 * r["wer"] for r in results], color="tab:red")
    left.set_xlim(0, max(5.0, 110 * max(r["wer"] for r in results)))
    left.set_xlabel("word error rate (%)")
    right.barh(names, [r["seconds_per_audio_second"] for r in results], color="tab:blue")
    right.set_xlabel("processing seconds per audio second")
    right.set_yticks([])
    fig.suptitle(f"STT benchmark over {results[0]['audio_seconds']:.0f} s of audio")
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="python -m agent bench-stt", description=__doc__.split("\n")[0]
    )
    p.add_argument("--refs", required=True, type=Path, help="TSV: file<TAB>reference text")
    p.add_argument(
        "--stt", default=DEFAULT_STT, help=f"comma-separated descriptors ({DEFAULT_STT})"
    )
    p.add_argument("--json", type=Path, default=Path("bench-stt.json"), help="figures out")
    p.add_argument("--plot", type=Path, default=Path("bench-stt.png"), help="chart out")
    add_audio_arguments(p, files="*")
    args = p.parse_args(argv)

    settings = Settings.from_env()
    refs = read_refs(args.refs)
    files = [Path(f) for f in args.files] or list(refs)
    references = [reference_for(refs, f) for f in files]
    descriptors = [
        stt_descriptor(settings, d.strip(), None) for d in args.stt.split(",") if d.strip()
    ]
    for desc in descriptors:
        config.check_package(desc)
    audios = [audio_files.load(f, args.encoding, args.sample_rate) for f in files]

    results = bench(descriptors, audios, references, settings, args.api, args.base_url)
    print_table(results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    print(f"wrote {args.json} and {args.plot}")
