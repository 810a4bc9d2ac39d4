"""German from the page, as a new user would: on the local defaults, choose German in the
language picker, speak German (Chromium's fake microphone plays espeak-ng's German), read the
German transcript and the agent's German answer, and hear it."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests import browser
from tools import sentences, stack
from tools.caller import SAMPLE_RATE
from tools.wer import cer, normalize

pytestmark = pytest.mark.e2e

GERMAN = sentences.SENTENCES["de"][0]  # "Guten Morgen, ich hätte gerne einen Tisch für ..."


def german_wav(path: Path) -> Path:
    """The sentence after 8 s of silence (the agent greets first), then silence to end the turn."""
    pcm = sentences.Sample("de", GERMAN).pcm48k()
    silence = np.zeros(SAMPLE_RATE * 8, np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.concatenate([silence, pcm, silence, silence, silence]).tobytes())
    return path


async def test_german_from_the_page(livekit_server, worker, tmp_path):
    wav = german_wav(tmp_path / "german.wav")
    async with (
        browser.page_server(livekit_server.url, worker.agent_name) as url,
        browser.chromium(*browser.microphone(wav)) as page,
    ):
        await page.goto(f"{url}/#key={browser.KEY}")
        await page.wait_for_function("() => document.querySelectorAll('#stt option').length > 1")
        assert await page.input_value("#stt") == "local/auto"  # the language picks the engine
        offered = await page.eval_on_selector_all("#language option", "os => os.map(o => o.value)")
        # what the local engines really hear: Whisper's 100, and multi (detected per utterance)
        assert len(offered) == 101 and {"de", "multi"} <= set(offered)
        await page.select_option("#language", "de")  # before Start: the token carries it
        await browser.join_with_agent(page)
        assert await page.evaluate(browser.LEVEL_METER_JS) == "running"

        await page.wait_for_function(
            f"""() => ({browser.TRANSCRIPT_JS})().some(l => l.speaker === 'agent' && l.final &&
                l.text.startsWith('Du hast gesagt'))""",
            timeout=120_000,
        )
        lines = await page.evaluate(browser.TRANSCRIPT_JS)
        agent = [line["text"] for line in lines if line["speaker"] == "agent"]
        assert agent[0].startswith("Hallo!"), agent  # the greeting, in German
        user = " ".join(
            line["text"] for line in lines if line["speaker"] == "you" and line["final"]
        )
        # CER of espeak-ng's German: Whisper base 0.09-0.39, English relabelled 0.67-0.87
        assert cer(GERMAN, user) <= 0.45, (user, lines)
        assert {"guten", "morgen"} <= set(normalize(user).split()), user
        assert await page.text_content("#stt-active") == "local/whisper-base:de"
        # each line says its language: the caller's from the transcript, the agent's answer's
        tags = await page.eval_on_selector_all(
            "#transcript li", "lis => lis.map(li => li.querySelector('.lang')?.textContent)"
        )
        assert set(tags) == {"de"}, tags
        assert await page.evaluate(browser.AGENT_AUDIO_PLAYING_JS)
        assert await page.evaluate("window.agentPeak") > 0.01  # the German answer is heard
        await page.screenshot(path=str(stack.ARTIFACTS / "browser-german.png"), full_page=True)
