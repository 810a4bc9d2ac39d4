"""Benchmarks that print figures and write them to benchmarks/results/ (benchmarks/README.md)."""

import json
from collections.abc import Callable
from pathlib import Path


def save(out: Path, name: str, result, draw: Callable[[Path], None]) -> None:
    """`result` as out/<name>.json, and its plot, drawn by `draw(path)`, as out/<name>.png."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    draw(out / f"{name}.png")
    print(f"wrote {out / name}.json and {out / name}.png")
