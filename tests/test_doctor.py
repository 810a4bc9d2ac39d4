"""`python -m agent doctor` on a machine without settings and against a real livekit-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "STT", "LLM", "TTS",
            "CARTESIA_API_KEY", "CARTESIA_BASE_URL", "LIVEKIT_INFERENCE_URL", "STT_OPTIONS")  # fmt: skip


def doctor(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run in an empty folder (no .env) with only the settings given."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run(
        [sys.executable, "-m", "agent", "doctor"],
        cwd=tmp_path,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def line(out: str, name: str) -> str:
    return next(row for row in out.splitlines() if name in row)


def test_missing_livekit_url_fails_with_the_fix(tmp_path):
    done = doctor(tmp_path, LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="topsecretvalue")
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert line(done.stdout, "credentials").startswith("FAIL")
    assert "LIVEKIT_URL not set" in done.stdout
    assert "copy .env.example to .env" in done.stdout
    assert line(done.stdout, "settings").startswith("ok")  # the local defaults still resolve
    assert "local/moonshine-tiny:en" in done.stdout
    assert "topsecretvalue" not in done.stdout + done.stderr


def test_running_server_with_right_and_wrong_keys(tmp_path, livekit_server):
    url = livekit_server.url
    keys = {"LIVEKIT_API_KEY": stack.API_KEY, "LIVEKIT_API_SECRET": stack.API_SECRET}
    done = doctor(tmp_path, LIVEKIT_URL=url, **keys)
    print(done.stdout)
    assert f"{url} accepted the keys" in line(done.stdout, "livekit server")
    assert line(done.stdout, "livekit server").startswith("ok")
    for model in ("local/moonshine-tiny", "local/whisper-tiny", "local/hibari"):
        assert line(done.stdout, model).startswith("ok")
    assert line(done.stdout, "audio").startswith(("ok", "warn"))  # PortAudio loads
    assert done.returncode == 0 and done.stdout.rstrip().endswith("ready.")
    assert stack.API_SECRET not in done.stdout

    wrong = doctor(tmp_path, LIVEKIT_URL=url, LIVEKIT_API_KEY="devkey", LIVEKIT_API_SECRET="nope-x")
    assert wrong.returncode == 1
    assert "rejected the keys" in line(wrong.stdout, "livekit server")
    assert "nope-x" not in wrong.stdout + wrong.stderr


def test_unreachable_server_and_provider(tmp_path):
    done = doctor(
        tmp_path,
        LIVEKIT_URL="ws://127.0.0.1:9",
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET="secret",
        STT="cartesia/ink-whisper:en",
        CARTESIA_API_KEY="sk-private",
        CARTESIA_BASE_URL="http://127.0.0.1:9",
    )
    assert done.returncode == 1
    assert "not reachable" in line(done.stdout, "livekit server")
    assert "scripts/livekit-server.sh start" in done.stdout
    assert line(done.stdout, "cartesia ").startswith("FAIL")  # the session's STT needs it
    assert "sk-private" not in done.stdout + done.stderr
