"""A call whose process dies is dispatched again, by the worker that ran it.

Each call runs in its own process (agent/worker.py), so a crash (a native engine fault, the
OOM killer, kill -9) ends that call's agent and nothing else. LiveKit marks the job failed
and livekit-server does not retry it; the caller would sit in a room with no agent. So when
a call's process exits with a failure while a caller is still in its room, the worker creates
a new dispatch of the agent for that room: a fresh process from the idle pool joins within a
second and greets the caller again. (When the whole worker dies, nobody is left to notice:
that is services/redispatch.py's job, from livekit-server's webhooks, ~20 s later.)
"""

from __future__ import annotations

import asyncio
import logging

from livekit import api
from livekit.agents import AgentServer, ipc

from . import config

logger = logging.getLogger("agent.recovery")
MAX_PER_ROOM = 3  # a call whose process keeps dying has a bug that a new process won't fix


def watch(server: AgentServer, settings: config.Settings) -> None:
    """Re-dispatch the calls of `server` whose process fails. Call once the server started."""
    tasks: set[asyncio.Task] = set()
    per_room: dict[str, int] = {}

    def on_closed(proc: ipc.job_executor.JobExecutor) -> None:
        job = proc.running_job
        if job is None or proc.status != ipc.job_executor.JobStatus.FAILED:
            return
        room = job.job.room.name
        per_room[room] = per_room.get(room, 0) + 1
        if per_room[room] > MAX_PER_ROOM:
            logger.error(
                "the call in room %s died %d times: not dispatching again", room, MAX_PER_ROOM
            )
            return
        task = asyncio.create_task(_redispatch(settings, job.job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # the process pool is the only place LiveKit reports a job process's exit; it is private
    # (checked on livekit-agents 1.8.9 by tests/test_livekit_hooks.py)
    server._proc_pool.on("process_closed", on_closed)


async def _redispatch(settings: config.Settings, job) -> None:
    room = job.room.name
    async with api.LiveKitAPI(
        settings.livekit_url,
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
    ) as lk:
        try:
            people = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        except api.TwirpError:  # the room is gone: nobody to recover
            return
        callers = [p for p in people.participants if p.kind != api.ParticipantInfo.Kind.AGENT]
        if not callers:
            return
        logger.warning("the process of the call in room %s died; dispatching the agent again", room)
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=job.agent_name, room=room, metadata=job.metadata
            )
        )
