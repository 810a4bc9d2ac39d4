"""Turn-taking in real calls: no answer into a pause mid-sentence, push-to-talk from an rtc
client and from the page (the agent answers only on release), and a dispatch choosing it."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import uuid
import wave

import numpy as np
import pytest

from agent.push_to_talk import MODE_ATTRIBUTE
from tests import browser
from tests.test_console import PYTHON, ROOT, speak_into, tmux, virtual_audio, wait_for_screen

__all__ = ["virtual_audio"]  # a fixture, used by name
from tools import stack
from tools.caller import SAMPLE_RATE, SILENCE_QUEUE_S, Caller, insert_pause, synthesize
from tools.wer import normalize, wer

pytestmark = pytest.mark.e2e

PAUSED = "I need a taxi to the airport at five in the morning."
SENTENCE = "Please book a table for two at seven."


@pytest.fixture(scope="module")
def manual_worker(livekit_server):
    w = stack.start_worker(livekit_server, {"TURN_DETECTION": "manual"}, name="worker-manual")
    yield w
    stack.stop(w.process)


def call(server, agent_name: str, **kwargs) -> Caller:
    return Caller(server.url, stack.API_KEY, stack.API_SECRET, agent_name, **kwargs)


async def agent_attribute(caller: Caller, key: str, timeout: float = 10) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in caller.room.remote_participants.values():
            if key in p.attributes:
                return p.attributes[key]
        await asyncio.sleep(0.1)
    return ""


async def test_a_pause_mid_sentence_gets_one_answer_after_its_end(worker, livekit_server):
    """400 ms of silence between "...to the airport" and "at five in the morning": a person
    would wait, and so does the agent on its defaults."""
    pcm, pause_at = insert_pause(synthesize(PAUSED), 0.4)
    async with call(livekit_server, worker.agent_name) as caller:
        await caller.wait_for_greeting()
        started = time.time()
        turn = await caller.say(PAUSED, pcm)
        loud = [t for t, f in caller.agent_frames if started < t and float((f**2).mean()) > 1e-4]
        assert loud, "the agent never answered"
        assert loud[0] > turn.speech_end, (
            f"the agent spoke {loud[0] - started - pause_at:.2f} s into the pause"
        )
        assert len(turn.agent_texts) == 1, turn.agent_texts
        # one answer, to the whole sentence
        heard = normalize(turn.agent_texts[0]).removeprefix("you said")
        assert wer(PAUSED, heard) <= 0.3, turn.agent_texts


async def test_push_to_talk_answers_only_on_release(manual_worker, livekit_server):
    pcm = synthesize(SENTENCE)
    async with call(livekit_server, manual_worker.agent_name) as caller:
        await caller.wait_for_greeting()
        assert await agent_attribute(caller, MODE_ATTRIBUTE) == "manual"
        greeted = len(caller.agent_finals())

        # speaking without holding the button: the agent hears nothing
        await caller.speak(pcm)
        await asyncio.sleep(3)
        assert not caller.user_finals()
        assert len(caller.agent_finals()) == greeted

        # holding it: the agent listens, and waits while the button stays down
        await caller.rpc("start_turn")
        speech_end = await caller.speak(pcm)
        await asyncio.sleep(2.5)
        assert len(caller.agent_finals()) == greeted, "answered before the button came up"
        loud = [t for t, f in caller.agent_frames if t > speech_end and (f**2).mean() > 1e-4]
        assert not loud, "spoke before the button came up"

        released = time.time()
        await caller.rpc("end_turn")
        await caller.wait_for(lambda: len(caller.agent_finals()) > greeted, 20)
        await caller.wait_until_quiet()
        answers = caller.agent_finals()[greeted:]
        assert len(answers) == 1, [a.text for a in answers]
        assert answers[0].at > released
        heard = normalize(answers[0].text).removeprefix("you said")
        assert wer(SENTENCE, heard) <= 0.2, answers[0].text


async def test_push_to_talk_keeps_the_first_word_said_as_the_button_goes_down(
    manual_worker, livekit_server
):
    """People start talking as they press: the press (an RPC, apart from the audio) reaches
    the agent a third of a second into the first word, and the turn still starts with it."""
    pcm = synthesize(SENTENCE)
    async with call(livekit_server, manual_worker.agent_name) as caller:
        await caller.wait_for_greeting()
        greeted = len(caller.agent_finals())
        # the microphone plays queued speech after at most SILENCE_QUEUE_S of silence
        starts = time.time() + SILENCE_QUEUE_S
        speaking = asyncio.create_task(caller.speak(pcm))
        await asyncio.sleep(starts + 0.3 - time.time())
        await caller.rpc("start_turn")
        speech_end = await speaking
        await asyncio.sleep(max(0.0, speech_end - time.time()))
        await caller.rpc("end_turn")
        await caller.wait_for(lambda: len(caller.agent_finals()) > greeted, 20)
        heard = normalize(caller.user_finals()[-1].text)
        assert heard.split()[0] == "please", heard
        assert wer(SENTENCE, heard) <= 0.2, heard


async def test_push_to_talk_keeps_the_last_word_said_as_the_button_comes_up(
    manual_worker, livekit_server
):
    """People let go as they finish the last word. Committed 0.15 s after the release, the
    turn's flush cut the line right after that word, and Moonshine wrote "…tomorrow morning"
    as "…to-morrow more, more," in 5 turns of 6 (agent/push_to_talk.py RELEASE_GRACE_S)."""
    said = "Remind me to call my sister tomorrow morning."
    async with call(livekit_server, manual_worker.agent_name) as caller:
        await caller.wait_for_greeting()
        heard = [(await caller.say(said, push_to_talk=True)).user_final for _ in range(4)]
    texts = [h.text if h else None for h in heard]
    assert all(h is not None and wer(said, h.text) == 0 for h in heard), texts


async def test_a_dispatch_can_turn_push_to_talk_on(worker, livekit_server):
    metadata = '{"turn_detection": "manual"}'
    async with call(livekit_server, worker.agent_name, metadata=metadata) as caller:
        await caller.wait_for_greeting()
        assert await agent_attribute(caller, MODE_ATTRIBUTE) == "manual"
        turn = await caller.say(SENTENCE, push_to_talk=True)
        assert turn.first_agent_audio is not None
        assert turn.user_final is not None and wer(SENTENCE, turn.user_final.text) <= 0.2


async def test_hold_to_talk_on_the_page(manual_worker, livekit_server, tmp_path):
    """Chromium's fake microphone says the sentence over and over; the agent answers once,
    after the button is released, to what was said while it was held."""
    wav = tmp_path / "loop.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        silence = np.zeros(SAMPLE_RATE // 2, np.int16)
        w.writeframes(np.concatenate([synthesize(SENTENCE), silence]).tobytes())
    agent_lines = f"() => ({browser.TRANSCRIPT_JS})().filter(l => l.speaker === 'agent' && l.final)"
    async with (
        browser.page_server(livekit_server.url, manual_worker.agent_name) as url,
        browser.chromium(*browser.microphone(wav, once=False)) as page,
    ):
        await page.goto(f"{url}/#key={browser.KEY}")
        await browser.join_with_agent(page)
        await page.wait_for_selector("#talk:not([hidden])", timeout=20_000)
        await page.wait_for_function(f"() => ({agent_lines})().length >= 1", timeout=30_000)
        await page.wait_for_timeout(4000)  # the microphone talks; nobody holds the button
        greeted = len(await page.evaluate(agent_lines))

        box = await page.locator("#talk").bounding_box()
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()
        assert await page.text_content("#talk") == "Release to send"
        await page.wait_for_timeout(5000)  # at least one whole sentence while held
        assert len(await page.evaluate(agent_lines)) == greeted, "answered while held"
        await page.mouse.up()

        await page.wait_for_function(
            f"() => ({agent_lines})().some(l => l.text.toLowerCase().startsWith('you said'))",
            timeout=30_000,
        )
        await page.wait_for_timeout(3000)
        answers = [
            line["text"]
            for line in (await page.evaluate(agent_lines))[greeted:]
            if normalize(line["text"]).startswith("you said")
        ]
        await page.screenshot(path=str(stack.ARTIFACTS / "browser-push-to-talk.png"))
        assert len(answers) == 1, answers
        assert "table" in normalize(answers[0]), answers


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by scripts/setup.sh")
def test_push_to_talk_in_the_audio_console(virtual_audio):
    """`console` with TURN_DETECTION=manual: the space bar starts a turn and sends it."""
    runtime, fifo = virtual_audio
    session = f"console-ptt-{uuid.uuid4().hex[:8]}"
    command = (
        f"XDG_RUNTIME_DIR={runtime} STT= LLM= TTS= LIVEKIT_URL= AGENT_HTTP_PORT=0 "
        f"TURN_DETECTION=manual {PYTHON} -m agent console"
    )
    tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50", "-c", str(ROOT), command)
    try:
        wait_for_screen(session, "local development agent", 120)
        speak_into(fifo, "The red kite circles over the hill.")  # nobody pressed space
        time.sleep(2)
        assert "You said" not in tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)
        tmux("send-keys", "-t", session, " ")
        speak_into(fifo, "What time does the library open tomorrow?")
        assert "You said" not in tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)
        tmux("send-keys", "-t", session, " ")
        screen = wait_for_screen(session, "You said: ", 60)
        heard = re.search(r'"You said: ([^"]+)"', screen).group(1)
        assert "library" in heard.lower() and "kite" not in heard.lower(), heard
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
