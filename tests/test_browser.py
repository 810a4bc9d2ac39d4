"""The page in a real (headless) Chromium: it joins the agent's room through the token
endpoint, speaks a WAV file through Chromium's fake microphone, and shows both transcripts."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from livekit import api
from playwright.async_api import async_playwright

from services.web import DIST
from tools import stack
from tools.caller import SAMPLE_RATE, synthesize
from tools.wer import normalize, wer

pytestmark = pytest.mark.e2e

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


async def test_a_call_from_the_browser(livekit_server, worker, tmp_path):
    wav = speech_wav(tmp_path / "speech.wav")
    # LIVEKIT_INFERENCE_URL only for the page's catalog, so that it offers the cloud models and
    # their languages as choices; nothing listens there and the worker does not use it
    cloud_choices = {
        "LIVEKIT_INFERENCE_URL": "http://127.0.0.1:9/v1",
        "STT": "local/moonshine-tiny",
    }
    async with (
        page_server(livekit_server.url, worker.agent_name, **cloud_choices) as url,
        chromium(*microphone(wav)) as page,
    ):
        await page.goto(f"{url}/#key={KEY}")
        await page.wait_for_function("() => document.querySelectorAll('#stt option').length > 1")
        assert await page.input_value("#stt") == "local/moonshine-tiny"
        await join_with_agent(page)
        room = await page.text_content("#room")

        # the agent's audio: attached, playing a live track, and audibly not silence
        assert await page.evaluate(LEVEL_METER_JS) == "running"

        # both transcripts: the user's final words, then the agent's echo of them
        await page.wait_for_function(
            f"""() => ({TRANSCRIPT_JS})().some(l => l.speaker === 'agent' && l.final &&
                l.text.toLowerCase().startsWith('you said'))""",
            timeout=60_000,
        )
        lines = await page.evaluate(TRANSCRIPT_JS)
        user = " ".join(
            line["text"] for line in lines if line["speaker"] == "you" and line["final"]
        )
        assert wer(SENTENCE, user) <= 0.2, (user, lines)
        reply = next(
            line["text"]
            for line in lines
            if line["speaker"] == "agent" and normalize(line["text"]).startswith("you said")
        )
        assert wer(SENTENCE, normalize(reply).removeprefix("you said")) <= 0.2, reply
        assert await page.evaluate(AGENT_AUDIO_PLAYING_JS)
        assert await page.evaluate("window.agentPeak") > 0.01

        # the pickers set the participant's attributes, as the room (and so the agent) sees them
        before = await web_participant(livekit_server.url, room)
        assert before is not None
        assert dict(before.attributes) == {"language": "en", "stt": "local/moonshine-tiny"}
        await page.select_option("#stt", "cartesia/ink-whisper")
        await page.select_option("#language", "fr")
        attributes: dict[str, str] = {}

        def changed() -> bool:
            return attributes.get("language") == "fr"

        for _ in range(50):
            participant = await web_participant(livekit_server.url, room)
            attributes = dict(participant.attributes)
            if changed():
                break
            await page.wait_for_timeout(100)
        assert attributes == {"language": "fr", "stt": "cartesia/ink-whisper"}

        await page.wait_for_timeout(500)  # let the agent's answer to the change render
        await page.screenshot(path=str(stack.ARTIFACTS / "browser-call.png"), full_page=True)
        # a clean disconnect: the room no longer has the browser in it
        await page.click("#stop")
        await page.wait_for_function(
            "() => document.getElementById('state').textContent === 'disconnected'"
        )
        for _ in range(50):
            if await web_participant(livekit_server.url, room) is None:
                break
            await page.wait_for_timeout(100)
        assert await web_participant(livekit_server.url, room) is None


async def test_errors_are_shown_on_the_page(livekit_server):
    dead = f"ws://127.0.0.1:{stack.free_port()}"
    async with page_server(livekit_server.url, "nobody") as url, chromium() as page:
        # a wrong key: the token is refused and the key field appears
        await page.goto(f"{url}/#key=wrong")
        await page.click("#start")
        await page.wait_for_selector("#error:not([hidden])")
        assert "token refused" in await page.text_content("#error")
        assert await page.is_visible("#key-field")

        # the right key, but this browser has no microphone: in the room, and it says so
        await page.fill("#key", KEY)
        await page.click("#start")
        await page.wait_for_function(
            "() => document.getElementById('state').textContent === 'connected'", timeout=30_000
        )
        await page.wait_for_function(
            "() => /microphone/.test(document.getElementById('error').textContent)", timeout=15_000
        )
        await page.click("#stop")

    async with page_server(dead, "nobody") as url, chromium() as page:
        # the LiveKit server is down
        await page.goto(f"{url}/#key={KEY}")
        await page.click("#start")
        await page.wait_for_function(
            "() => /could not join the LiveKit server/.test(document.getElementById('error').textContent)",
            timeout=60_000,
        )
        assert await page.text_content("#state") == "disconnected"
        assert not await page.is_disabled("#start")
