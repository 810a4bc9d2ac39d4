"""`python -m agent console --text` in a real terminal (tmux): no cloud, no LiveKit server."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tools.wer import wer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PYTHON = shlex.quote(sys.executable)  # the project's own interpreter, wherever uv is


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_for_screen(session: str, text: str, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        screen = tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)
        if text in screen:
            return screen
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not on the console after {timeout}s:\n{screen}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by scripts/setup.sh")
def test_text_console_echoes_a_typed_line():
    session = f"console-{uuid.uuid4().hex[:8]}"
    # No LiveKit settings at all, and port 0 for the worker's health endpoint so a running
    # worker on 8081 does not collide.
    command = (
        "env -u LIVEKIT_URL -u LIVEKIT_API_KEY -u LIVEKIT_API_SECRET STT= LLM= TTS= "
        f"LIVEKIT_URL= AGENT_HTTP_PORT=0 {PYTHON} -m agent console --text"
    )
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", "-c", str(ROOT), command)
    try:
        wait_for_screen(session, "local development agent", 120)  # the echo LLM's greeting
        tmux("send-keys", "-t", session, "the blue whale sings at dawn", "Enter")
        reply = "You said: the blue whale sings at dawn"
        screen = wait_for_screen(session, f"\n    {reply}\n", 60)
        assert re.search(rf"Agent *\n *{reply}\n", screen)  # rendered under the Agent heading
        assert "STT=local/moonshine-tiny:en" in screen and "LLM=local/echo" in screen
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


@pytest.fixture
def virtual_audio(tmp_path):
    """A private PulseAudio: a null sink as the speaker, a FIFO-fed source as the microphone.

    PortAudio reaches it through ALSA's pulse plugin (libasound2-plugins), so the console's
    audio mode runs on a headless machine exactly as on a laptop.
    """
    alsa_pulse = list(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so"))
    if not (shutil.which("pulseaudio") and alsa_pulse):
        pytest.skip("needs pulseaudio and libasound2-plugins (scripts/setup.sh installs them)")
    runtime, fifo = tmp_path / "pulse", tmp_path / "mic.fifo"
    runtime.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
         "--load=module-native-protocol-unix", "--load=module-null-sink sink_name=speaker",
         f"--load=module-pipe-source source_name=mic file={fifo} format=s16le rate=16000 channels=1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode:
            assert time.time() < deadline, "pulseaudio did not start"
            time.sleep(0.2)
        for args in (["set-default-source", "mic"], ["set-default-sink", "speaker"]):
            subprocess.run(["pactl", *args], env=env, check=True)
        yield runtime, fifo
    finally:
        daemon.terminate()
        daemon.wait(10)


def speak_into(fifo: Path, text: str) -> None:
    """Synthesized speech into the virtual microphone, in real time, then silence."""
    import numpy as np

    from tests.speech import spoken_16k

    silence = np.zeros(16000 * 2, np.float32)
    pcm = np.concatenate([silence, spoken_16k(text), silence, silence])
    with fifo.open("wb") as mic:
        for start in range(0, len(pcm), 1600):  # 100 ms at a time, at the pace of speech
            mic.write((np.clip(pcm[start : start + 1600], -1, 1) * 32767).astype("<i2").tobytes())
            mic.flush()
            time.sleep(0.1)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by scripts/setup.sh")
def test_audio_console_hears_the_microphone(virtual_audio):
    runtime, fifo = virtual_audio
    session = f"console-{uuid.uuid4().hex[:8]}"
    command = (
        f"XDG_RUNTIME_DIR={runtime} STT= LLM= TTS= LIVEKIT_URL= AGENT_HTTP_PORT=0 "
        f"{PYTHON} -m agent console"
    )
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", str(ROOT), command)
    try:
        wait_for_screen(session, "local development agent", 120)  # greeting played to the sink
        speak_into(fifo, "What time does the library open tomorrow?")
        screen = wait_for_screen(session, "You said: ", 60)
        heard = re.search(r'"You said: ([^"]+)"', screen).group(1)
        assert wer("What time does the library open tomorrow?", heard) <= 0.3, heard
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
