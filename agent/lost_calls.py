"""End a call whose caller cannot come back, so that its MAX_CALLS slot is free again.

A caller who hangs up ends the call at once (the session closes, agent/worker.py). What that
does not cover is livekit-server going away: the call's room connection reconnects for as long
as the server is down, and once it is back the agent joins the room again, now a fresh, empty
room on the new server, where it would wait until the server closes that room (5 minutes),
holding a slot. So a call is lost when, for LOST_AFTER seconds in a row, the room is not
connected or the caller who was there is not. The job then ends with one log line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from livekit import rtc
from livekit.agents import JobContext

logger = logging.getLogger("agent.lost_calls")

LOST_AFTER = 15.0  # seconds: above a network blip or a caller's own reconnect (a few seconds)
CHECK_EVERY = 1.0


def end_when_lost(ctx: JobContext, lost_after: float = LOST_AFTER) -> None:
    """Watch the call of `ctx` (once connected) and shut the job down when it is lost."""
    task = asyncio.create_task(_watch(ctx, lost_after))

    async def stop(_reason: str = "") -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    ctx.add_shutdown_callback(stop)


def callers(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    return [
        p
        for p in room.remote_participants.values()
        if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    ]


def why_lost(room: rtc.Room, caller_seen: bool) -> str:
    """Why the call cannot go on right now, or "" while it can."""
    if room.connection_state != rtc.ConnectionState.CONN_CONNECTED:
        return "the connection to livekit-server is lost"
    return "the caller is gone" if caller_seen and not callers(room) else ""


async def _watch(ctx: JobContext, lost_after: float) -> None:
    caller_seen, since = False, None
    while True:
        await asyncio.sleep(CHECK_EVERY)
        room = ctx.room
        reason = why_lost(room, caller_seen)
        if not reason:
            caller_seen = caller_seen or bool(callers(room))
            since = None
            continue
        since = since or time.monotonic()
        if time.monotonic() - since >= lost_after:
            logger.warning("call in room %s ended: %s for %.0f s", room.name, reason, lost_after)
            ctx.shutdown(f"call lost: {reason}")
            return
