"""Live switching: the caller's `stt` and `language` attributes change the running session's
STT without dropping the call, and the next utterance is transcribed with the new settings
(asserted on the gateway, which records what each STT session asked for). A refused change
is published back as the agent's `stt_error` and the old STT keeps working."""

import asyncio
import json
import time

import pytest
from livekit import rtc

from agent import switching
from tools import stack
from tools.caller import Caller
from tools.wer import wer

pytestmark = pytest.mark.e2e

LINES = ["What a lovely day it is.", "Please book a table for two at seven."]


def heard_by(gateway, line: str) -> list[dict]:
    """The gateway sessions that transcribed `line` (one session may serve several turns)."""
    return [s for s in gateway.sessions() if any(wer(line, f) <= 0.2 for f in s["finals"])]


async def agent_attribute(caller: Caller, name: str, predicate, timeout: float = 20) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in caller.room.remote_participants.values():
            if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and predicate(
                p.attributes.get(name, "")
            ):
                return p.attributes.get(name, "")
        await asyncio.sleep(0.1)
    raise AssertionError(f"agent attribute {name} never matched")


async def test_attributes_switch_the_stt_mid_call(livekit_server, gateway):
    env = {
        "STT": "local/moonshine-tiny:en",
        "LLM": "local/echo",
        "TTS": "local/hibari:heart",
        "LIVEKIT_INFERENCE_URL": f"{gateway.base}/v1",
    }
    worker = stack.start_worker(livekit_server, extra_env=env, name="worker-switch")
    try:
        async with Caller(
            livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name
        ) as caller:
            await caller.wait_for_greeting()
            await agent_attribute(
                caller, switching.ACTIVE, lambda v: v == "local/moonshine-tiny:en"
            )

            async def say(line: str) -> None:
                turn = await caller.say(line)
                assert turn.user_final is not None, f"no transcript of {line!r}"
                assert wer(line, turn.user_final.text) <= 0.2, turn.user_final.text

            sessions = len(gateway.sessions())  # the gateway is shared by the session's tests
            await say(LINES[0])  # the local engine: the gateway sees nothing
            assert len(gateway.sessions()) == sessions

            # 1. another model: the STT is swapped, the next utterance goes to the gateway
            await caller.room.local_participant.set_attributes({"stt": "cartesia/ink-whisper:en"})
            await agent_attribute(
                caller, switching.ACTIVE, lambda v: v == "cartesia/ink-whisper:en"
            )
            await say(LINES[1])
            heard = heard_by(gateway, LINES[1])
            assert heard and heard[-1]["model"] == "cartesia/ink-whisper", gateway.sessions()
            assert heard[-1]["language"] == "en"

            # 2. another language on the same model: update_options reaches the live stream
            await caller.room.local_participant.set_attributes({"language": "en-GB"})
            await agent_attribute(
                caller, switching.ACTIVE, lambda v: v == "cartesia/ink-whisper:en-GB"
            )
            await say(
                LINES[0]
            )  # British English: the same engine, a new language on the live stream
            heard = heard_by(gateway, LINES[0])
            assert heard and heard[-1]["settings"]["language"] == "en-GB", json.dumps(
                gateway.sessions()
            )
            assert {"language": "en-GB"} in heard[-1][
                "updates"
            ]  # session.update on the live stream

            # 3. a refused change: the error comes back, the call and the old STT go on
            await caller.room.local_participant.set_attributes({"stt": "deepgram/nova-7:en"})
            error = await agent_attribute(caller, switching.ERROR, bool)
            assert "unknown STT model 'deepgram/nova-7'; did you mean 'deepgram/nova-3'" in error
            await say(LINES[1])
            assert (
                await agent_attribute(caller, switching.ACTIVE, bool)
            ) == "cartesia/ink-whisper:en-GB"

            # 4. back to the local engine; the error is cleared
            await caller.room.local_participant.set_attributes(
                {"stt": "local/moonshine-tiny:en", "language": ""}
            )
            await agent_attribute(
                caller, switching.ACTIVE, lambda v: v == "local/moonshine-tiny:en"
            )
            await agent_attribute(caller, switching.ERROR, lambda v: v == "")
            before = sum(len(s["finals"]) for s in gateway.sessions())
            await say(LINES[0])
            assert sum(len(s["finals"]) for s in gateway.sessions()) == before
    finally:
        stack.stop(worker.process)
    log = worker.output()
    assert "STT change refused, keeping cartesia/ink-whisper:en-GB" in log
