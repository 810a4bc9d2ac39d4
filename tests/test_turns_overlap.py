"""A caller who talks over the agent is heard whole: speech that starts during the greeting, or
during a reply, is transcribed from its first word, the agent stops, and it answers the whole
utterance. In English (Moonshine) and German (Whisper base), on the local defaults and through
the gateway (the agent on LiveKit Inference's protocol, the gateway on the same plugin streams)."""

from __future__ import annotations

import json

import pytest

from tools import stack
from tools.caller import Caller, synthesize
from tools.overlap import prompt_a_reply, talk_over
from tools.wer import lost_words, normalize

pytestmark = pytest.mark.e2e

# (language, said over the greeting, said politely to get a reply, said over that reply); the
# German sentences are ones Whisper base transcribes from espeak-ng's voice
CASES = {
    "en": (
        "Please book a table for two at seven tonight.",
        "I would like a cup of coffee with milk and two spoons of sugar please.",
        "Actually make that a large pot of green tea.",
    ),
    "de": (
        "Der Zug nach Hamburg fährt heute eine Stunde später ab.",
        "Ich möchte morgen früh um acht Uhr einen Tisch für vier Personen bestellen.",
        "Ich habe meinen Schlüssel im Auto vergessen.",
    ),
}
# Every word: the transcript starts with the sentence's first word, and leaves out at most this
# many more words than the same engine does on the same sentence spoken politely. A misheard
# word is not a lost one ("Schlüssel" heard as "Schrußel" under a busy CI), but Whisper may
# merge two into one ("Zug nach" as "Zutach"); the cut beginnings this guards against lost 6-7.
LOST_MARGIN = 2


@pytest.fixture(scope="module")
def gateway_worker(livekit_server, gateway):
    """The agent with STT=cartesia/ink-whisper, reaching the gateway as LiveKit Inference."""
    env = {"STT": "cartesia/ink-whisper:en", "LIVEKIT_INFERENCE_URL": f"{gateway.base}/v1"}
    w = stack.start_worker(livekit_server, env, name="worker-overlap-gateway")
    yield w
    stack.stop(w.process)


# both languages on their local engines (Moonshine, Whisper base); the gateway drives the same
# plugin streams, with one adapter for every language, so English alone goes through it
@pytest.mark.parametrize(
    ("language", "route"), [("en", "local"), ("de", "local"), ("en", "gateway")]
)
async def test_talking_over_the_greeting_and_a_reply_loses_no_word(
    request, livekit_server, language, route
):
    worker = request.getfixturevalue("worker" if route == "local" else "gateway_worker")
    over_greeting, prompt, over_reply = CASES[language]
    metadata = json.dumps({"language": language}) if language != "en" else ""
    async with Caller(
        livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name, metadata=metadata
    ) as caller:
        overlaps = [await talk_over(caller, over_greeting, language)]  # 0.5 s into the greeting
        await prompt_a_reply(caller, prompt, language)
        overlaps.append(await talk_over(caller, over_reply, language))  # 0.5 s into the reply
        for heard in overlaps:
            polite = await caller.say(heard.said, synthesize(heard.said, language))
            baseline = polite.user_final.text if polite.user_final else ""
            assert heard.interrupted, f"the agent did not stop for the caller: {heard}"
            # what it heard, and what it answered: all of it
            for text in (heard.transcript, heard.answered):
                assert starts_alike(heard.said, text) or not starts_alike(heard.said, baseline), (
                    heard,
                    baseline,
                )
                lost = lost_words(heard.said, text) - lost_words(heard.said, baseline)
                assert lost <= LOST_MARGIN, (heard, baseline)


def starts_alike(said: str, text: str) -> bool:
    return normalize(text).split()[:1] == normalize(said).split()[:1]
