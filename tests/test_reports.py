"""The call report's logic (agent/reports.py) and `python -m agent calls` (tools/calls.py) on
reports built here; tests/test_calls_e2e.py writes real ones from a real call."""

from __future__ import annotations

import json
import os
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from livekit.agents import NOT_GIVEN
from livekit.agents.llm import ChatMessage
from pydantic import SecretStr

from agent import config, reports, switching
from agent.errors import AgentError
from services.web import make_app
from tools import calls

pytestmark = pytest.mark.unit

SECRET = "sk-7c1e0b9d55aa"


def settings(**env: str) -> config.Settings:
    return config.Settings.from_env(env, dotenv=False)


def test_the_settings_table_says_which_layer_set_each_and_hides_secrets():
    s = settings(CARTESIA_API_KEY=SECRET, LIVEKIT_API_KEY="devkey", TURN_DETECTION="vad")
    p = switching.with_dispatch(config.resolve(s), '{"record_calls": true, "language": "de"}')
    table = reports.settings_table(p.settings)
    assert table["turn_detection"] == {"value": "vad", "set_by": "environment"}
    assert table["record_calls"] == {"value": True, "set_by": "dispatch"}
    assert table["language"] == {"value": "de", "set_by": "dispatch"}
    assert table["max_calls"]["set_by"] == "default"
    assert table["cartesia_api_key"]["value"] == table["livekit_api_key"]["value"] == "(set)"
    assert table["openai_api_key"]["value"] == ""
    assert SECRET not in json.dumps(table)


def test_a_url_keeps_its_host_but_not_its_password():
    s = settings(LLM_BASE_URL="http://user:hunter22@llm.local:8080/v1")
    assert reports.settings_table(s)["llm_base_url"]["value"] == "http://llm.local:8080/v1"


def test_a_secret_quoted_anywhere_but_in_what_was_said_is_replaced():
    report = {
        "errors": [{"error": f"401 from https://api.example/?key={SECRET}"}],
        "turns": [{"user": {"text": f"my code is {SECRET}"}}],
    }
    clean = reports.scrub(report, reports._secrets(settings(CARTESIA_API_KEY=SECRET)))
    assert SECRET not in clean["errors"][0]["error"]
    assert clean["turns"][0]["user"]["text"] == f"my code is {SECRET}"


def test_a_call_is_recorded_only_when_asked():
    assert reports.record_option(settings()) is NOT_GIVEN  # LiveKit's own default stands
    assert reports.record_option(settings(RECORD_CALLS="1"))["audio"] is True
    per_call = switching.with_dispatch(config.resolve(settings()), '{"record_calls": true}')
    assert reports.record_option(per_call.settings) == reports.RECORDING
    assert reports.record_option(settings(RECORD_CALLS="1", CALL_REPORTS="0")) is NOT_GIVEN


@pytest.mark.parametrize(
    "env, words",
    [
        ({"CALL_REPORTS_MAX_MB": "-1"}, "CALL_REPORTS_MAX_MB"),
        ({"PROMETHEUS_PORT": "70000"}, "PROMETHEUS_PORT"),
        ({"RECORD_CALLS": "maybe"}, "RECORD_CALLS"),
    ],
)
def test_bad_report_settings_stop_at_startup_in_one_line(env, words):
    with pytest.raises(config.ConfigError, match=words):
        settings(**env)


def test_turns_carry_their_stages_and_what_the_caller_heard_of_a_cut_reply():
    greeting = ChatMessage(role="assistant", content=["Hello!"], metrics={"started_speaking_at": 1})
    user = ChatMessage(
        role="user",
        content=["book a table"],
        metrics={
            "started_speaking_at": 10.0,
            "stopped_speaking_at": 11.0,
            "transcription_delay": 0.3,
            "end_of_turn_delay": 0.5,
        },
    )
    cut = ChatMessage(
        role="assistant",
        content=["You said: book"],  # the synchronized transcript: up to where it was cut
        interrupted=True,
        metrics={"started_speaking_at": 11.7, "stopped_speaking_at": 12.2},
    )
    greeting_turn, turn = reports.build_turns([greeting, user, cut], events=[])
    assert greeting_turn["user"] is None
    assert turn["stages"]["final_transcript"] == 0.3
    assert turn["stages"]["end_of_turn"] == 0.5
    assert turn["stages"]["first_audio_out"] == pytest.approx(0.7)
    assert turn["stages"]["llm_first_token"] is None  # no metrics event for it
    assert turn["interrupted"] and turn["agent"]["text"] == "You said: book"


def test_the_receive_buffer_wait_is_read_over_the_turn():
    turn = {
        "user": {"started_speaking_at": 10.0, "stopped_speaking_at": 11.0},
        "agent": {"started_speaking_at": 11.7},
        "stages": {"first_audio_out": 0.7},
    }
    # (time, total seconds waited, samples emitted): 0.06 s per sample over the turn
    jitter = [(5.0, 1.0, 100), (10.0, 10.0, 1000), (11.1, 70.0, 2000), (12.0, 130.0, 3000)]
    reports.add_network([turn], jitter)
    assert turn["network"] == {"in_s": 0.06}


def _report(room: str, started: float, latencies: list[float]) -> dict:
    turns = [
        {
            "user": {"text": f"turn {n}"},
            "agent": {"text": "You said it"},
            "stages": dict.fromkeys(reports.STAGES, None) | {"first_audio_out": latency},
            "interrupted": False,
        }
        for n, latency in enumerate(latencies)
    ]
    return {
        "room": room,
        "agent": "voice-agent",
        "job_id": "AJ_123456",
        "started_at": started,
        "duration_s": 12.5,
        "ended_because": {"shutdown": "the session closed", "session": "participant_disconnected"},
        "settings": {"stt": {"value": "local/moonshine-tiny:en", "set_by": "environment"}},
        "stt_changes": [],
        "errors": [],
        "turns": turns,
        "summary": {
            "turns": len(turns),
            "interruptions": 0,
            "latency_median_s": sorted(latencies)[len(latencies) // 2],
            "latency_worst_s": max(latencies),
        },
        "recording": None,
    }


def test_pruning_drops_the_oldest_calls_beyond_the_limits_with_their_recordings(tmp_path):
    now = time.time()
    for n, age_days in enumerate([40, 3, 2, 1]):
        stem = f"call-{n}"
        (tmp_path / f"{stem}.json").write_text("x" * 400_000)
        (tmp_path / f"{stem}.ogg").write_bytes(b"o" * 100_000)
        for suffix in (".json", ".ogg"):
            os.utime(tmp_path / f"{stem}{suffix}", (now - age_days * 86400,) * 2)
    deleted = reports.prune(tmp_path, max_mb=1.2, max_days=30)
    # call-0 is too old; of 1.5 MB left, call-1 (the oldest) goes to get under 1.2 MB
    assert sorted(p.name for p in deleted) == [
        "call-0.json",
        "call-0.ogg",
        "call-1.json",
        "call-1.ogg",
    ]
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == ["call-2", "call-3"]
    assert reports.prune(tmp_path, max_mb=0, max_days=0) == []  # 0: no limit


def test_the_calls_command_lists_calls_and_prints_one_calls_stages(tmp_path, capsys):
    for room, started, latencies in [("older", 1000.0, [0.5, 0.9]), ("newer", 2000.0, [0.6])]:
        report = _report(room, started, latencies)
        (tmp_path / f"{room}.json").write_text(json.dumps(report))
    (tmp_path / "notes.json").write_text("[]")  # not a report: skipped
    calls.main(["--dir", str(tmp_path), "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert [c["room"] for c in listed] == ["newer", "older"]
    assert listed[1]["latency_worst_s"] == 0.9
    calls.main(["--dir", str(tmp_path)])
    assert "900" in capsys.readouterr().out  # the worst turn, in ms
    calls.main(["--dir", str(tmp_path), "older"])
    text = capsys.readouterr().out
    assert "turn 1" in text and "audio out" in text and "STT=local/moonshine-tiny:en" in text
    with pytest.raises(AgentError, match="no call in room 'gone'"):
        calls.main(["--dir", str(tmp_path), "gone"])


def _page(folder, **extra) -> web.Application:
    return make_app(
        config.Settings(
            livekit_url="ws://127.0.0.1:7880",
            livekit_api_key="devkey",
            livekit_api_secret=SecretStr("secret"),
            call_reports_dir=str(folder),
            **extra,
        )
    )


async def test_the_page_server_serves_the_calls_and_a_recording_read_only(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_report("room-a", 1000.0, [0.5])))
    recorded = _report("room-b", 2000.0, [0.7]) | {"recording": "b.ogg"}
    (tmp_path / "b.json").write_text(json.dumps(recorded))
    (tmp_path / "b.ogg").write_bytes(b"OggS-audio")
    # a report whose recording points outside the folder is not followed there
    (tmp_path / "c.json").write_text(
        json.dumps(_report("room-c", 500.0, [0.5]) | {"recording": "../secret.ogg"})
    )
    (tmp_path.parent / "secret.ogg").write_bytes(b"not yours")
    async with TestClient(TestServer(_page(tmp_path))) as client:
        listed = await (await client.get("/api/calls")).json()
        assert [c["room"] for c in listed] == ["room-b", "room-a", "room-c"]
        assert (await (await client.get("/api/calls/room-a")).json())["turns"][0]["user"]
        audio = await client.get("/api/calls/room-b/audio")
        assert audio.status == 200 and audio.content_type == "audio/ogg"
        assert await audio.read() == b"OggS-audio"
        assert (await client.get("/api/calls/room-a/audio")).status == 404  # not recorded
        assert (await client.get("/api/calls/room-c/audio")).status == 404
        missing = await client.get("/api/calls/nobody")
        assert missing.status == 404 and "nobody" in (await missing.json())["error"]
        assert (await client.post("/api/calls")).status == 405


async def test_beyond_loopback_the_calls_take_the_access_key(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_report("room-a", 1000.0, [0.5])))
    app = _page(tmp_path, token_endpoint_secret=SecretStr("k-123456"))
    async with TestClient(TestServer(app)) as client:
        refused = await client.get("/api/calls")
        assert refused.status == 401 and "TOKEN_ENDPOINT_SECRET" in (await refused.json())["error"]
        assert (await client.get("/api/calls/room-a")).status == 401
        allowed = await client.get("/api/calls", headers={"Authorization": "Bearer k-123456"})
        assert allowed.status == 200 and len(await allowed.json()) == 1
