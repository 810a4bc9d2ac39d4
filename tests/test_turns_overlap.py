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
from tools.wer import wer

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
# every word: what the same engine hears in the same sentence spoken politely, give or take one
# word in ten (a lost opening word or two costs 0.2 or more)
MARGIN = 0.1


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
            baseline = wer(heard.said, polite.user_final.text if polite.user_final else "")
            assert heard.interrupted, f"the agent did not stop for the caller: {heard}"
            assert wer(heard.said, heard.transcript) <= baseline + MARGIN, (heard, baseline)
            # and the agent answered all of it
            assert wer(heard.said, heard.answered) <= baseline + MARGIN, (heard, baseline)
