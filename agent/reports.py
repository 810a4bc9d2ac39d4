"""A report of every call, written when it ends, and the worker's Prometheus metrics.

The report is a JSON file in CALL_REPORTS_DIR (docs/calls.md describes its fields). It is built
from what LiveKit Agents already keeps for a session (`JobContext.make_session_report()`: the
session's events, with their times, and its chat history, whose messages carry the turn's
metrics), so a call costs nothing while it runs but one small callback per transcript, which
notes the STT that produced it (the session's events do not say: a fallback or a live switch
changes it mid-call). Every time is the job process's wall clock, read where the event happened.

A turn's stages, each a time after the end of the caller's speech (the VAD's, dated by the
signal's energy: agent/plugins/onset_vad.py):

    final_transcript   the STT's final transcript arrived
    end_of_turn        the session decided the caller's turn was over
    llm_first_token    the LLM's first token (preemptive generation may start it earlier)
    tts_first_audio    the TTS's first audio
    first_audio_out    the reply's first audio frame went out to the room
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr

from . import config

logger = logging.getLogger("agent.reports")

# the agent's attribute with the last turn's stages (JSON), for the page's live view
TURN_ATTRIBUTE = "turn_latency"
STAGES = (
    "final_transcript",
    "end_of_turn",
    "llm_first_token",
    "tts_first_audio",
    "first_audio_out",
)
RECORDING = {"audio": True, "traces": False, "logs": False, "transcript": False}
AUDIO_NAME = "audio.ogg"  # what LiveKit's RecorderIO writes in the job's session directory
# the setting names whose values are never written anywhere (beyond SecretStr fields)
SECRET_NAME = re.compile(r"(_key|_secret|_token)$")
REDACTED = "(set)"


def reports_dir(settings: config.Settings) -> Path:
    return Path(settings.call_reports_dir).expanduser().resolve()


def record_option(settings: config.Settings) -> dict | Any:
    """session.start()'s `record`: audio only when the call is recorded (RECORD_CALLS, or
    `record_calls` in the dispatch metadata); otherwise LiveKit's own default (not given)."""
    from livekit.agents import NOT_GIVEN

    return dict(RECORDING) if settings.record_calls and settings.call_reports else NOT_GIVEN


def attach(ctx, session, live) -> None:
    """Write the call's report when its job shuts down; count it in the metrics meanwhile.
    `live` is the call's agent/switching.LiveSTT (its plan follows live switches)."""
    if not live.plan.settings.call_reports:
        return
    Call(ctx, session, live)


class Call:
    """What is noted while a call runs; the rest is read from the session when it ends."""

    def __init__(self, ctx, session, live) -> None:
        self.ctx, self.session, self.live = ctx, session, live
        self.started = time.time()
        self.first_settings = live.plan.settings
        self.transcripts: list[dict] = []
        self.stt_changes: list[dict] = []
        self._stt = ""
        self._adapters: set[int] = set()
        # (wall clock, seconds the caller's audio waited in the receive jitter buffer in all,
        # samples it emitted) at each edge of the caller's speech
        self.jitter: list[tuple[float, float, int]] = []
        self._tasks: set = set()
        self.cpu_s = 0.0  # this thread's CPU spent on the report (benchmarks/report_cost.py)
        self.stats_reads = 0
        metrics().calls_active.inc()
        session.on("user_input_transcribed", self._on_transcript)
        session.on("user_state_changed", self._on_speech_edge)
        session.on("agent_state_changed", self._on_speech_edge)
        session.on("conversation_item_added", self._on_item)
        ctx.add_shutdown_callback(self._on_shutdown)

    def _on_speech_edge(self, ev) -> None:
        if "speaking" in (ev.old_state, ev.new_state) and self.ctx.room.isconnected():
            task = asyncio.create_task(self._read_jitter())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_item(self, ev) -> None:
        """A reply is in the chat history: publish its stages to the page (TURN_ATTRIBUTE)."""
        item = ev.item
        if getattr(item, "role", None) != "assistant" or not self.ctx.room.isconnected():
            return
        started = time.thread_time()
        items = self.session.history.items
        user = next((i for i in reversed(items[:-1]) if getattr(i, "role", "") == "user"), None)
        if user is None:
            return
        metrics = [
            e for e in self.session._recorded_events[-200:] if e.type != "user_input_transcribed"
        ]
        turn = build_turns([user, item], metrics)[0]
        value = json.dumps({"stages": turn["stages"], "interrupted": turn["interrupted"]})
        task = asyncio.create_task(
            self.ctx.room.local_participant.set_attributes({TURN_ATTRIBUTE: value})
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.cpu_s += time.thread_time() - started

    async def _read_jitter(self) -> None:
        """The receive jitter buffer's totals for the caller's audio (WebRTC's inbound-rtp
        stats): how long the caller's speech waited in it before the agent heard it."""
        try:
            stats = await self.ctx.room.get_rtc_stats()
        except Exception:  # the room is going away
            return
        started = time.thread_time()
        self.stats_reads += 1
        inbound = [
            s.inbound_rtp.inbound
            for s in [*stats.subscriber_stats, *stats.publisher_stats]
            if s.WhichOneof("stats") == "inbound_rtp" and s.inbound_rtp.stream.kind == "audio"
        ]
        if inbound:
            busiest = max(inbound, key=lambda i: i.jitter_buffer_emitted_count)
            self.jitter.append(
                (time.time(), busiest.jitter_buffer_delay, busiest.jitter_buffer_emitted_count)
            )
        self.cpu_s += time.thread_time() - started

    def _active_stt(self) -> str:
        """The STT transcribing now: the agent's (a live switch sets it), else the session's;
        within a fallback chain, the first member still available."""
        from livekit.agents.utils import is_given

        try:
            agent = self.session.current_agent
        except RuntimeError:  # between agents (a handoff)
            agent = None
        stt = agent.stt if agent is not None and is_given(agent.stt) else self.session.stt
        members = getattr(stt, "members", None)
        if members is None:
            return _describe(stt)
        if id(stt) not in self._adapters:  # each fallback chain, once: count its fallbacks
            self._adapters.add(id(stt))
            stt.on("stt_availability_changed", self._on_availability)
        statuses = getattr(stt, "_status", [])
        for member, status in zip(members, statuses, strict=False):
            if status.available:
                return _describe(member)
        return _describe(members[0])

    def _on_availability(self, ev) -> None:
        if not ev.available:
            metrics().stt_fallbacks.inc()
        self.stt_changes.append(
            {
                "at": time.time(),
                "kind": "available" if ev.available else "failed",
                "stt": _describe(ev.stt),
            }
        )

    def _on_transcript(self, ev) -> None:
        started = time.thread_time()
        stt = self._active_stt()
        if stt != self._stt:
            if self._stt:
                metrics().stt_switches.inc()
                self.stt_changes.append(
                    {"at": ev.created_at, "kind": "switch", "from": self._stt, "stt": stt}
                )
            self._stt = stt
        self.transcripts.append(
            {
                "at": ev.created_at,
                "final": ev.is_final,
                "text": ev.transcript,
                "language": str(ev.language or ""),
                "stt": stt,
            }
        )
        self.cpu_s += time.thread_time() - started

    async def _on_shutdown(self, reason: str) -> None:
        metrics().calls_active.dec()
        try:
            started = time.thread_time()
            report = self.build(reason)
            # what the report cost this process's main thread so far (the stats reads' share
            # in LiveKit's media thread is not in it: benchmarks/report_cost.py measures it)
            report["cost"] = {
                "cpu_s": round(self.cpu_s + time.thread_time() - started, 4),
                "stats_reads": self.stats_reads,
            }
            write(report, reports_dir(self.live.plan.settings), self._audio_path())
            observe(report)
            prune(
                reports_dir(self.live.plan.settings),
                self.live.plan.settings.call_reports_max_mb,
                self.live.plan.settings.call_reports_max_days,
            )
        except Exception:  # a report must never take the worker down
            logger.exception("the call's report could not be written")

    def _audio_path(self) -> Path | None:
        path = Path(self.ctx.session_directory) / AUDIO_NAME
        return path if path.exists() else None

    def build(self, reason: str) -> dict:
        sr = self.ctx.make_session_report(self.session)
        events = sr.events
        close = next((e for e in reversed(events) if e.type == "close"), None)
        turns = build_turns(sr.chat_history.items, events)
        add_network(turns, self.jitter)
        latencies = [t["stages"]["first_audio_out"] for t in turns if t["user"] is not None]
        latencies = [v for v in latencies if v is not None]
        report = {
            "version": 1,
            "room": sr.room,
            "room_id": sr.room_id,
            "job_id": sr.job_id,
            "agent": sr.agent_name,
            "started_at": sr.started_at or self.started,
            "ended_at": sr.timestamp,
            "duration_s": round(sr.timestamp - (sr.started_at or self.started), 3),
            "ended_because": {
                "shutdown": reason,
                "session": str(close.reason.value) if close else None,
                "error": _scrub_text(str(close.error)) if close and close.error else None,
            },
            "settings": settings_table(self.live.plan.settings),
            "settings_at_start": settings_table(self.first_settings)
            if self.first_settings is not self.live.plan.settings
            else None,
            "stt_changes": self.stt_changes,
            "transcripts": self.transcripts,
            "speech": speech_activity(events, sr.timestamp),
            "turns": turns,
            "summary": {
                "turns": sum(1 for t in turns if t["user"] is not None),
                "interruptions": sum(1 for t in turns if t["interrupted"]),
                "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
                "latency_worst_s": round(max(latencies), 3) if latencies else None,
            },
            "errors": [
                {
                    "at": e.created_at,
                    "component": type(e.source).__name__,
                    "error": _scrub_text(str(getattr(e.error, "error", e.error)))[:300],
                    "recoverable": bool(getattr(e.error, "recoverable", False)),
                }
                for e in events
                if e.type == "error"
            ],
            "recording": None,
            # where the recording's two channels start on the calls' clock
            "recording_started_at": sr.audio_recording_started_at,
        }
        return scrub(report, _secrets(self.live.plan.settings))


def _describe(stt) -> str:
    """`provider/model` of an STT (unwrapped from LiveKit's StreamAdapter)."""
    stt = getattr(stt, "wrapped_stt", stt)
    provider, model = getattr(stt, "provider", ""), getattr(stt, "model", "")
    return f"{provider}/{model}" if provider else str(model or type(stt).__name__)


def settings_table(settings: config.Settings) -> dict[str, dict]:
    """Every setting with its value and the layer that set it (config.LAYERS); secrets are
    shown as set or not, never their value."""
    table = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) or SECRET_NAME.search(name):
            secret = value.get_secret_value() if isinstance(value, SecretStr) else value
            value = REDACTED if secret else ""
        elif isinstance(value, str) and "@" in value:  # a URL's user:password@
            value = _strip_userinfo(value)
        table[name] = {"value": value, "set_by": settings.source(name)}
    return table


def _strip_userinfo(value: str) -> str:
    parts = urlparse(value)
    if not parts.password and not parts.username:
        return value
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def _secrets(settings: config.Settings) -> list[str]:
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif not SECRET_NAME.search(name):
            continue
        if isinstance(value, str) and len(value) >= 4:
            values.append(value)
    return values


def _scrub_text(text: str) -> str:
    return re.sub(r"(?i)(api[_-]?key|token|secret|authorization)=[^&\s]+", r"\1=***", text)


def scrub(value: Any, secrets: list[str], key: str = "") -> Any:
    """`value` with every secret (an error's message may quote a key) replaced, in every string
    but what was said (`text`: a dev secret such as "secret" is also a word)."""
    if isinstance(value, dict):
        return {k: scrub(v, secrets, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets, key) for v in value]
    if isinstance(value, str) and key != "text":
        for secret in secrets:
            value = value.replace(secret, "***")
    return value


def _at(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if value is not None else None


def build_turns(items: list, events: list) -> list[dict]:
    """One entry per reply of the agent (the greeting has no `user`), with the caller's message
    it answers and the stages of its latency, in seconds after the end of the caller's speech."""
    llm_first, tts_first = {}, {}  # speech id -> wall-clock time of the first token/audio
    speech_of_item = {}  # chat item id -> speech id
    for ev in events:
        if ev.type == "metrics_collected":
            m = ev.metrics
            if m.type == "llm_metrics" and m.speech_id and m.ttft >= 0:
                at = m.timestamp - m.duration + m.ttft
                llm_first[m.speech_id] = min(at, llm_first.get(m.speech_id, at))
            elif m.type == "tts_metrics" and m.speech_id and m.ttfb >= 0:
                at = m.timestamp - m.duration + m.ttfb
                tts_first[m.speech_id] = min(at, tts_first.get(m.speech_id, at))
        elif ev.type == "speech_created":
            for item in ev.speech_handle.chat_items:
                speech_of_item[item.id] = ev.speech_handle.id
    turns, user = [], None
    for item in items:
        if item.type != "message":
            continue
        if item.role == "user":
            user = item
            continue
        if item.role != "assistant":
            continue
        um = dict(user.metrics) if user is not None else {}
        am = dict(item.metrics)
        speech_id = speech_of_item.get(item.id)
        end = _at(um, "stopped_speaking_at")
        marks = {
            "final_transcript": end + um["transcription_delay"]
            if end is not None and "transcription_delay" in um
            else None,
            "end_of_turn": end + um["end_of_turn_delay"]
            if end is not None and "end_of_turn_delay" in um
            else None,
            "llm_first_token": llm_first.get(speech_id),
            "tts_first_audio": tts_first.get(speech_id),
            "first_audio_out": _at(am, "started_speaking_at"),
        }
        stages = {
            k: round(v - end, 3) if v is not None and end is not None else None
            for k, v in marks.items()
        }
        turns.append(
            {
                "user": None
                if user is None
                else {
                    "text": user.text_content or "",
                    "started_speaking_at": _at(um, "started_speaking_at"),
                    "stopped_speaking_at": end,
                },
                "agent": {
                    "text": item.text_content or "",
                    "started_speaking_at": _at(am, "started_speaking_at"),
                    "stopped_speaking_at": _at(am, "stopped_speaking_at"),
                    "speech_id": speech_id,
                },
                "stages": stages,
                "at": {k: v for k, v in marks.items() if v is not None},
                # the reply's text up to where it was cut is what the caller heard of it
                "interrupted": bool(item.interrupted),
            }
        )
        user = None
    return turns


def add_network(turns: list[dict], jitter: list[tuple[float, float, int]]) -> None:
    """Each turn's `network.in_s`: how long the caller's audio waited in the agent's receive
    jitter buffer, on average, from the caller's first word to the reply. The end of speech is
    dated where the agent heard it, so the caller stopped talking that much (and the network's
    one-way delay) earlier; the caller hears the reply after its own receive buffer."""
    for turn in turns:
        turn["network"] = None
        user = turn["user"]
        if user is None or user["started_speaking_at"] is None:
            continue
        until = (turn["agent"]["started_speaking_at"] or user["stopped_speaking_at"]) + 0.5
        during = [(d, n) for at, d, n in jitter if user["started_speaking_at"] - 0.5 <= at <= until]
        if len(during) >= 2 and during[-1][1] > during[0][1]:
            wait = (during[-1][0] - during[0][0]) / (during[-1][1] - during[0][1])
            turn["network"] = {"in_s": round(wait, 3)}


def speech_activity(events: list, end: float) -> dict[str, list[list[float]]]:
    """When the caller (the VAD's `speaking` state) and the agent (`speaking`) spoke, as
    [start, end] spans."""
    lanes: dict[str, list[list[float]]] = {"user": [], "agent": []}
    for ev in events:
        lane = {"user_state_changed": "user", "agent_state_changed": "agent"}.get(ev.type)
        if lane is None:
            continue
        if ev.new_state == "speaking":
            lanes[lane].append([ev.created_at, end])
        elif ev.old_state == "speaking" and lanes[lane]:
            lanes[lane][-1][1] = ev.created_at
    return lanes


def _file_stem(report: dict) -> str:
    started = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report["started_at"]))
    room = re.sub(r"[^\w.-]", "_", report["room"])[:80]
    return f"{started}-{room}-{report['job_id'][-6:]}"


def write(report: dict, folder: Path, audio: Path | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = _file_stem(report)
    if audio is not None:
        shutil.move(audio, folder / f"{stem}.ogg")
        report["recording"] = f"{stem}.ogg"
    path = folder / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(path)  # a reader never sees half a report
    logger.info("call report: %s", path)
    return path


def prune(folder: Path, max_mb: float, max_days: float) -> list[Path]:
    """Delete the oldest calls (report and recording together) beyond `max_days` days or
    `max_mb` megabytes in all; 0 turns a limit off. Returns what was deleted."""
    calls: dict[str, list[Path]] = {}
    for path in folder.glob("*"):
        if path.suffix in (".json", ".ogg"):
            calls.setdefault(path.stem, []).append(path)
    stats = {}
    for stem, paths in calls.items():
        try:
            stats[stem] = (
                max(p.stat().st_mtime for p in paths),
                sum(p.stat().st_size for p in paths),
            )
        except FileNotFoundError:  # another process pruned it meanwhile
            continue
    oldest_first = sorted(stats, key=lambda s: stats[s][0])
    total = sum(size for _, size in stats.values())
    deleted = []
    for stem in oldest_first:
        mtime, size = stats[stem]
        too_old = max_days and time.time() - mtime > max_days * 86400
        too_big = max_mb and total > max_mb * 1e6
        if not (too_old or too_big):
            continue
        for path in calls[stem]:
            path.unlink(missing_ok=True)
            deleted.append(path)
        total -= size
    return deleted


def load(folder: Path) -> list[dict]:
    """Every report in `folder`, newest first (a file that is not a report is skipped)."""
    reports = []
    for path in folder.glob("*.json"):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and "turns" in report:
            report["file"] = path.name
            reports.append(report)
    return sorted(reports, key=lambda r: r.get("started_at", 0), reverse=True)


def summary(report: dict) -> dict:
    """What a list of calls shows of one (`python -m agent calls`, the page's Calls view)."""
    return {
        "room": report["room"],
        "started_at": report["started_at"],
        "duration_s": report["duration_s"],
        "ended_because": report["ended_because"],
        "recording": report.get("recording"),
        "file": report.get("file"),
        **report["summary"],
    }


def find(folder: Path, room: str) -> dict | None:
    """The newest report of `room` (or of the report file named `room`)."""
    for report in load(folder):
        if room in (report["room"], report.get("file"), Path(report.get("file", "")).stem):
            return report
    return None


# --- Prometheus -----------------------------------------------------------------------------

PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


def prepare_prometheus(settings: config.Settings) -> None:
    """Before livekit.agents is imported: every process of the worker (its job processes
    inherit the environment) keeps its metrics in files in one folder, which the worker's
    /metrics endpoint sums up (prometheus_client's multiprocess mode, read by LiveKit's
    endpoint). A folder per port: LiveKit empties it when the worker starts."""
    if settings.prometheus_port:
        folder = (
            Path(os.environ.get("TMPDIR", "/tmp")) / f"agent-prometheus-{settings.prometheus_port}"
        )
        os.environ.setdefault(PROMETHEUS_DIR_ENV, str(folder))


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.calls_active = Gauge(
            "agent_calls_active", "Calls in progress", multiprocess_mode="livesum"
        )
        self.calls = Counter("agent_calls", "Calls ended (a report written)")
        self.calls_refused = Counter(
            "agent_calls_refused", "Calls turned down for CPU pressure (agent/capacity.py)"
        )
        self.stage = Histogram(
            "agent_turn_stage_seconds",
            "Seconds from the end of the caller's speech to each stage of the reply",
            ["stage"],
            buckets=BUCKETS,
        )
        self.stt_fallbacks = Counter(
            "agent_stt_fallbacks", "An STT of a fallback chain failed and the next took over"
        )
        self.stt_switches = Counter(
            "agent_stt_switches", "The STT transcribing a call changed (a live switch or fallback)"
        )
        self.errors = Counter("agent_errors", "Errors of a call's components", ["component"])


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    """The project's metrics, created on first use (after the multiprocess folder is set)."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def observe(report: dict) -> None:
    m = metrics()
    m.calls.inc()
    for turn in report["turns"]:
        if turn["user"] is None:
            continue
        for stage, seconds in turn["stages"].items():
            if seconds is not None:
                m.stage.labels(stage=stage).observe(max(seconds, 0.0))
    for error in report["errors"]:
        m.errors.labels(component=error["component"]).inc()


def count_refusals(on_request):
    """The worker's on_request, counting the calls it turns down."""

    async def request(req) -> None:
        reject = req.reject

        async def counted(**kwargs) -> None:
            metrics().calls_refused.inc()
            await reject(**kwargs)

        req.reject = counted
        await on_request(req)

    return request
