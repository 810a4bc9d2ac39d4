"""A call with TURN_DETECTION=smart-turn answers in English, German and Spanish: the model's
turn ends reach the agent's reply in each (the model covers all three)."""

from __future__ import annotations

import json

import pytest

from agent.plugins.echo import phrases
from tools import stack
from tools.caller import Caller, synthesize

pytestmark = pytest.mark.e2e

SAID = {
    "en": "Please book a table for two at seven.",
    "de": "Der Zug nach Hamburg fährt heute eine Stunde später ab.",
    "es": "Mañana vamos a visitar a mis abuelos en el campo.",
}


@pytest.fixture(scope="module")
def smart_turn_worker(livekit_server):
    w = stack.start_worker(livekit_server, {"TURN_DETECTION": "smart-turn"}, name="worker-smart")
    yield w
    stack.stop(w.process)


@pytest.mark.parametrize("language", SAID)
async def test_a_smart_turn_call_answers(smart_turn_worker, livekit_server, language):
    metadata = json.dumps({"language": language}) if language != "en" else ""
    async with Caller(
        livekit_server.url,
        stack.API_KEY,
        stack.API_SECRET,
        smart_turn_worker.agent_name,
        metadata=metadata,
    ) as caller:
        await caller.wait_for_greeting()
        turn = await caller.say(SAID[language], synthesize(SAID[language], language))
        assert turn.first_agent_audio is not None, "no answer"
        prefix = phrases(language).you_said.split("{}")[0]
        assert any(t.startswith(prefix) for t in turn.agent_texts), turn.agent_texts
    assert "TURN_DETECTION=smart-turn [environment]" in smart_turn_worker.output()
