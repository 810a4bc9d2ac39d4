"""A whole call through the real livekit-server: a participant speaks, the agent transcribes
and answers with speech."""

import contextlib
from pathlib import Path

import psutil
import pytest

from agent.plugins.moonshine import MoonshineSTT
from tools import stack
from tools.caller import Caller
from tools.wer import normalize, wer

pytestmark = pytest.mark.e2e

UTTERANCES = [
    "What a lovely day it is.",
    "Please book a table for two at seven.",
]


async def test_call_transcribes_the_user_and_speaks_the_reply(worker, livekit_server):
    async with Caller(
        livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name
    ) as caller:
        # LiveKit's session host would broadcast every session event to the room: it is off
        session_events = []
        caller.room.register_byte_stream_handler(
            "lk.agent.session", lambda reader, identity: session_events.append(identity)
        )
        await caller.wait_for_greeting()
        for said in UTTERANCES:
            turn = await caller.say(said)

            # (a) the user's final transcript reaches the participant on lk.transcription
            assert turn.user_final is not None, f"no final transcript for {said!r}"
            assert wer(said, turn.user_final.text) <= 0.15, turn.user_final.text
            # stamped by the agent when it sent it (the capacity benchmark's latency): after
            # the speech ended, before the caller read it (one clock: the same machine)
            assert turn.speech_end < turn.user_final.sent <= turn.user_final.at

            # (b) the agent answers with audio; transcribed back, it is the echo of what it heard
            assert turn.first_agent_audio is not None, "the agent published no speech"
            reply = await _transcribe(turn.agent_audio)
            expected = f"you said {turn.user_final.text}"
            assert normalize(reply).startswith("you said"), reply
            assert wer(expected, reply) <= 0.25, reply
        assert session_events == []


async def _transcribe(pcm16k):
    from livekit import rtc

    pcm = (pcm16k * 32767).astype("int16")
    frame = rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))
    event = await MoonshineSTT().recognize([frame])
    return event.alternatives[0].text


async def test_a_calls_process_runs_one_media_thread(worker, livekit_server):
    """LiveKit's media runtime would start a worker thread per core in every call's process;
    the worker has it start one (TOKIO_WORKER_THREADS=1). The FFI names one more thread like
    them, so a call's process shows 2 (cores + 1 by default: 3 on a 2-core machine). A process
    the worker is still starting for the next call may show fewer for a moment, never more."""

    def thread_names(pid: int) -> list[str]:
        names = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                names.append((task / "comm").read_text().strip())
        return names

    def runtime_threads() -> dict[int, int]:
        counts = {}
        for p in psutil.Process(worker.process.pid).children(recursive=True):
            try:
                names = thread_names(p.pid)
            except FileNotFoundError:  # a process that just ended
                continue
            if "tokio-rt-worker" in names:
                counts[p.pid] = names.count("tokio-rt-worker")
        return counts

    async with Caller(
        livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name
    ) as caller:
        await caller.wait_for_greeting()
        counts = runtime_threads()  # the call's process has its media runtime by now
    assert counts, "no process of the worker runs LiveKit's media runtime during a call"
    assert max(counts.values()) == 2, counts
