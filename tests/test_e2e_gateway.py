"""The production STT setting, unchanged, runs a whole call offline: the agent configured as
`cartesia/ink-whisper:en` (or `ink-2`) reaches the local gateway (LiveKit Inference's wire
protocol, or Cartesia's with the user's own key) and transcribes a participant through
livekit-server. The worker is configured exactly as docs/gateway.md's example: LLM and TTS
are left unset, and since the gateway serves STT only they stay local."""

import json

import pytest

from tools import stack
from tools.caller import Caller
from tools.wer import wer

pytestmark = pytest.mark.e2e

SAID = "What a lovely day it is."


WORKER_STT = "cartesia/ink-whisper:en"
ROUTES = {  # route -> the worker's environment, given the gateway's address
    "inference": lambda base: {"LIVEKIT_INFERENCE_URL": f"{base}/v1"},
    "cartesia": lambda base: {"CARTESIA_API_KEY": "local-dev-key", "CARTESIA_BASE_URL": base},
}


@pytest.fixture(scope="module")
def workers(livekit_server, gateway):
    """A worker per route, STT=cartesia/ink-whisper:en and no LLM, no TTS: as docs/gateway.md
    writes it."""
    started = {}
    try:
        for route, env in ROUTES.items():
            extra = {"STT": WORKER_STT, **env(gateway.base)}
            started[route] = stack.start_worker(livekit_server, extra, name=f"worker-{route}")
        yield started
    finally:
        for worker in started.values():
            stack.stop(worker.process)


@pytest.mark.parametrize(
    "stt, route",
    [
        ("cartesia/ink-whisper:en", "inference"),
        ("cartesia/ink-whisper:en", "cartesia"),
        ("cartesia/ink-2:en", "cartesia"),  # the Cartesia plugin's turns websocket
    ],
)
async def test_ink_transcribes_a_participant_through_the_gateway(
    livekit_server, gateway, workers, stt, route
):
    worker = workers[route]
    startup = worker.output()
    assert f"STT={WORKER_STT} [environment]" in startup
    assert "LLM=local/echo [default]" in startup and "TTS=local/hibari:heart [default]" in startup
    # ink-2 on the same worker, chosen for this call by the dispatch (the worker's key and URL)
    metadata = "" if stt == WORKER_STT else json.dumps({"stt": stt})
    before = len(gateway.sessions())
    async with Caller(
        livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name, metadata=metadata
    ) as caller:
        await caller.wait_for_greeting()
        turn = await caller.say(SAID)
        assert turn.user_final is not None, worker.output()[-3000:]
        assert wer(SAID, turn.user_final.text) <= 0.2, turn.user_final.text
        assert turn.agent_texts, "the agent did not answer"
    sessions = gateway.sessions()[before:]
    heard = [
        s for s in sessions if s["route"] == route and any(wer(SAID, f) <= 0.2 for f in s["finals"])
    ]
    assert heard, sessions
    assert heard[0]["language"] == "en"
    assert heard[0]["model"] in (stt.split(":")[0], stt.split(":")[0].split("/")[1])
