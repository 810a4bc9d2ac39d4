"""The page in a real (headless) Chromium, for the end-to-end tests: its server and token
endpoint, a WAV file as Chromium's fake microphone, and the page's transcript and meters read
back from the DOM."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from livekit import api
from playwright.async_api import async_playwright

from services.web import DIST
from tools import stack
from tools.caller import SAMPLE_RATE, synthesize

CHROMIUM = "/usr/bin/chromium"
SENTENCE = "Please book a table for two at seven."
KEY = "browser-test-key"
BASE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
]
TRANSCRIPT_JS = """() => [...document.querySelectorAll('#transcript li')].map(li => ({
    speaker: li.dataset.speaker, final: li.dataset.final === 'true',
    text: li.querySelector('.text').textContent }))"""
AGENT_AUDIO_PLAYING_JS = """() => {
    const a = document.querySelector('#audio audio');
    return !!a && !a.paused && !!a.srcObject &&
        a.srcObject.getAudioTracks().some(t => t.readyState === 'live' && t.enabled);
}"""
# the loudest sample of the agent's audio as the page plays it, measured with WebAudio
LEVEL_METER_JS = """() => {
    const a = document.querySelector('#audio audio');
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    ctx.createMediaStreamSource(a.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    window.agentPeak = 0;
    setInterval(() => {
        analyser.getFloatTimeDomainData(buf);
        for (const v of buf) window.agentPeak = Math.max(window.agentPeak, Math.abs(v));
    }, 20);
    return ctx.resume().then(() => ctx.state);
}"""


def speech_wav(path: Path) -> Path:
    """The sentence in the bundled voice, 48 kHz mono int16, between stretches of silence (the
    agent greets first; the trailing silence ends the user's turn)."""
    pcm = synthesize(SENTENCE)
    silence = np.zeros(SAMPLE_RATE * 7, np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.concatenate([silence, pcm, silence, silence]).tobytes())
    return path


@asynccontextmanager
async def page_server(livekit_url: str, agent_name: str, **extra_env: str):
    """`python -m agent web` on a free port, configured through its environment only."""
    assert (DIST / "index.html").exists(), "web/dist is not built: run scripts/setup.sh"
    port = stack.free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LIVEKIT_", "WEB_"))},
        "LIVEKIT_URL": livekit_url,
        "LIVEKIT_API_KEY": stack.API_KEY,
        "LIVEKIT_API_SECRET": stack.API_SECRET,
        "AGENT_NAME": agent_name,
        "TOKEN_ENDPOINT_SECRET": KEY,
        **extra_env,
    }
    log = stack.ARTIFACTS / f"web-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "web", "--port", str(port)],
        cwd=stack.ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        stack.wait_for(
            lambda: "page on" in log.read_text() or process.poll() is not None, 60, "web", log
        )
        assert process.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        stack.stop(process)


def microphone(wav, once: bool = True) -> tuple[str, str]:
    """Chromium flags: a fake microphone that plays `wav` (once, or over and over)."""
    return (
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}{'%noloop' if once else ''}",
    )


@asynccontextmanager
async def chromium(*extra_flags: str):
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*BASE_FLAGS, *extra_flags]
        )
        page = await browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            yield page
        except BaseException:  # what the page showed and logged, to see why
            await page.screenshot(path=str(stack.ARTIFACTS / "browser-failure.png"))
            raise
        finally:
            (stack.ARTIFACTS / "browser-console.log").write_text("\n".join(console))
            await browser.close()


async def web_participant(livekit_url: str, room: str) -> api.ParticipantInfo | None:
    async with api.LiveKitAPI(livekit_url, stack.API_KEY, stack.API_SECRET) as lk:
        res = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    return next((p for p in res.participants if p.identity.startswith("web-")), None)


async def join_with_agent(page, attempts: int = 3) -> None:
    """Start, until the agent's audio plays. If no agent joins within the page's wait (a
    machine shared with other suites can be that slow) the page says no agent answered and
    leaves; a new Start is a new room and a new dispatch."""
    for _ in range(attempts):
        await page.click("#start")
        await page.wait_for_function(
            f"""() => ({AGENT_AUDIO_PLAYING_JS})() ||
                /no agent answered/.test(document.getElementById('error').textContent)""",
            timeout=60_000,
        )
        if await page.evaluate(AGENT_AUDIO_PLAYING_JS):
            return
        await page.wait_for_function(  # the page left the room by itself
            "() => document.getElementById('state').textContent === 'disconnected'"
        )
    raise AssertionError(
        f"no agent joined in {attempts} attempts: {await page.text_content('#error')}"
    )
