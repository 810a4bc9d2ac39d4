"""`python -m agent calls`: the recent calls' reports (agent/reports.py), in a terminal.

    python -m agent calls                 the recent calls, newest first
    python -m agent calls --json          the same as JSON (a summary per call)
    python -m agent calls ROOM            one call's turns with the time of each stage
    python -m agent calls ROOM --json     that call's whole report

Reports are read from CALL_REPORTS_DIR (default .run/calls), or --dir.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agent import config, reports
from agent.errors import AgentError

STAGE_LABELS = {
    "final_transcript": "transcript",
    "end_of_turn": "end of turn",
    "llm_first_token": "LLM 1st token",
    "tts_first_audio": "TTS 1st audio",
    "first_audio_out": "audio out",
}


def find(folder: Path, room: str) -> dict:
    report = reports.find(folder, room)
    if report is None:
        raise AgentError(
            f"no call in room {room!r} in {folder}: `python -m agent calls` lists them"
        )
    return report


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def listing(calls: list[dict]) -> str:
    if not calls:
        return "no calls yet"
    rows = [("started", "room", "duration", "turns", "median ms", "worst ms", "ended", "audio")]
    for c in calls:
        rows.append(
            (
                _clock(c["started_at"]),
                c["room"],
                f"{c['duration_s']:.0f} s",
                str(c["turns"]),
                _ms(c["latency_median_s"]),
                _ms(c["latency_worst_s"]),
                c["ended_because"]["session"] or c["ended_because"]["shutdown"],
                "yes" if c["recording"] else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def one_call(report: dict) -> str:
    lines = [
        f"room {report['room']}  agent {report['agent']}  {_clock(report['started_at'])}  "
        f"{report['duration_s']:.1f} s  ended: {report['ended_because']['session'] or ''} "
        f"({report['ended_because']['shutdown']})",
    ]
    chosen = {k: v for k, v in report["settings"].items() if v["set_by"] != "default"}
    if chosen:
        lines.append("settings (not default):")
        lines += [f"  {k.upper()}={v['value']}  ({v['set_by']})" for k, v in chosen.items()]
    if report.get("recording"):
        lines.append(f"recording: {report['recording']}")
    header = "  ".join(f"{label:>13}" for label in STAGE_LABELS.values())
    lines += ["", f"ms after the end of the caller's speech:   {header}"]
    for n, turn in enumerate(report["turns"]):
        said = turn["user"]["text"] if turn["user"] else "(the agent speaks first)"
        stages = "  ".join(f"{_ms(turn['stages'][k]):>13}" for k in STAGE_LABELS)
        lines.append(f"{n:>3} {said[:38]:<38}  {stages}")
        who = "agent, cut off; the caller heard" if turn["interrupted"] else "agent"
        lines.append(f"    {who}: {turn['agent']['text'][:90]}")
    for change in report["stt_changes"]:
        lines.append(
            f"STT {change['kind']} at +{change['at'] - report['started_at']:.1f} s: {change['stt']}"
        )
    for error in report["errors"]:
        lines.append(f"error at +{error['at'] - report['started_at']:.1f} s: {error['error']}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent calls", description=__doc__.split("\n")[0]
    )
    parser.add_argument("room", nargs="?", help="one call: its room (or report file)")
    parser.add_argument("--json", action="store_true", help="JSON instead of text")
    parser.add_argument("--dir", type=Path, help="the reports' folder (CALL_REPORTS_DIR)")
    parser.add_argument("-n", type=int, default=20, help="how many calls to list (20)")
    args = parser.parse_args(argv)
    folder = args.dir or reports.reports_dir(config.Settings.from_env())
    if args.room:
        report = find(folder, args.room)
        print(json.dumps(report, indent=1) if args.json else one_call(report))
        return
    calls = [reports.summary(r) for r in reports.load(folder)[: args.n]]
    print(json.dumps(calls, indent=1) if args.json else listing(calls))
