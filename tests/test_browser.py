"""The page in a real (headless) Chromium: it joins the agent's room through the token
endpoint, speaks a WAV file through Chromium's fake microphone, and shows both transcripts."""

from __future__ import annotations

import pytest

from tests import browser
from tools import stack
from tools.wer import normalize, wer

pytestmark = pytest.mark.e2e


async def test_a_call_from_the_browser(livekit_server, worker, tmp_path):
    wav = browser.speech_wav(tmp_path / "speech.wav")
    # LIVEKIT_INFERENCE_URL only for the page's catalog, so that it offers the cloud models and
    # their languages as choices; nothing listens there and the worker does not use it
    cloud_choices = {
        "LIVEKIT_INFERENCE_URL": "http://127.0.0.1:9/v1",
        "STT": "local/moonshine-tiny",
    }
    async with (
        browser.page_server(livekit_server.url, worker.agent_name, **cloud_choices) as url,
        browser.chromium(*browser.microphone(wav)) as page,
    ):
        await page.goto(f"{url}/#key={browser.KEY}")
        await page.wait_for_function("() => document.querySelectorAll('#stt option').length > 1")
        assert await page.input_value("#stt") == "local/moonshine-tiny"
        await browser.join_with_agent(page)
        room = await page.text_content("#room")

        # the agent's audio: attached, playing a live track, and audibly not silence
        assert await page.evaluate(browser.LEVEL_METER_JS) == "running"

        # both transcripts: the user's final words, then the agent's echo of them
        await page.wait_for_function(
            f"""() => ({browser.TRANSCRIPT_JS})().some(l => l.speaker === 'agent' && l.final &&
                l.text.toLowerCase().startsWith('you said'))""",
            timeout=60_000,
        )
        lines = await page.evaluate(browser.TRANSCRIPT_JS)
        user = " ".join(
            line["text"] for line in lines if line["speaker"] == "you" and line["final"]
        )
        assert wer(browser.SENTENCE, user) <= 0.2, (user, lines)
        reply = next(
            line["text"]
            for line in lines
            if line["speaker"] == "agent" and normalize(line["text"]).startswith("you said")
        )
        assert wer(browser.SENTENCE, normalize(reply).removeprefix("you said")) <= 0.2, reply
        assert await page.evaluate(browser.AGENT_AUDIO_PLAYING_JS)
        assert await page.evaluate("window.agentPeak") > 0.01

        # the pickers set the participant's attributes, as the room (and so the agent) sees them
        before = await browser.web_participant(livekit_server.url, room)
        assert before is not None
        assert dict(before.attributes) == {"language": "en", "stt": "local/moonshine-tiny"}
        await page.select_option("#stt", "cartesia/ink-whisper")
        await page.select_option("#language", "fr")
        attributes: dict[str, str] = {}

        def changed() -> bool:
            return attributes.get("language") == "fr"

        for _ in range(50):
            participant = await browser.web_participant(livekit_server.url, room)
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
            if await browser.web_participant(livekit_server.url, room) is None:
                break
            await page.wait_for_timeout(100)
        assert await browser.web_participant(livekit_server.url, room) is None


async def test_errors_are_shown_on_the_page(livekit_server):
    dead = f"ws://127.0.0.1:{stack.free_port()}"
    async with browser.page_server(livekit_server.url, "nobody") as url, browser.chromium() as page:
        # a wrong key: the token is refused and the key field appears
        await page.goto(f"{url}/#key=wrong")
        await page.click("#start")
        await page.wait_for_selector("#error:not([hidden])")
        assert "token refused" in await page.text_content("#error")
        assert await page.is_visible("#key-field")

        # the right key, but this browser has no microphone: in the room, and it says so
        await page.fill("#key", browser.KEY)
        await page.click("#start")
        await page.wait_for_function(
            "() => document.getElementById('state').textContent === 'connected'", timeout=30_000
        )
        await page.wait_for_function(
            "() => /microphone/.test(document.getElementById('error').textContent)",
            timeout=15_000,
        )
        await page.click("#stop")

    async with browser.page_server(dead, "nobody") as url, browser.chromium() as page:
        # the LiveKit server is down
        await page.goto(f"{url}/#key={browser.KEY}")
        await page.click("#start")
        await page.wait_for_function(
            "() => /could not join the LiveKit server/.test(document.getElementById('error').textContent)",
            timeout=60_000,
        )
        assert await page.text_content("#state") == "disconnected"
        assert not await page.is_disabled("#start")
