"""Give a call its agent back when the worker running it dies.

livekit-server (open source, v1.13.5) does not move a job when its worker goes away: it only
forgets the worker. The dead worker's agent participant stays in the room until the server's
fixed ICE timeouts give up on it (10 s + 5 s, then 5 s of cleanup: ~20 s), the job is marked
failed, and the caller is left alone (job migration, which livekit-agents asks for, is a stub in
the open-source server: `HandleMigrateJob`).

This service closes that gap with LiveKit's own parts: livekit-server posts a signed webhook when
a participant leaves; when the one leaving is an agent that was lost (a timeout or a broken
connection, not a goodbye) and a caller is still in the room, it creates the same agent dispatch
again, with the same metadata. The server hands the new job to a live worker, which joins and
greets the caller. Run one per cluster (it keeps no state that matters) and list its URL under
`webhook.urls` of every livekit-server node:

    python -m agent redispatch [--host 127.0.0.1] [--port 8091]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass

from aiohttp import web
from livekit import api
from livekit.protocol.models import DisconnectReason, ParticipantInfo

from agent import config, logs

logger = logging.getLogger(__name__)

AGENT_NAME_ATTRIBUTE = "lk.agent.name"  # set by livekit-server in every agent's token
# why an agent left; only these mean "lost" (a goodbye, a kick or a closed room do not)
LOST = {
    DisconnectReason.CONNECTION_TIMEOUT,
    DisconnectReason.SIGNAL_CLOSE,
    DisconnectReason.MEDIA_FAILURE,
    DisconnectReason.STATE_MISMATCH,
    DisconnectReason.SERVER_SHUTDOWN,
    DisconnectReason.UNKNOWN_REASON,
}
MAX_PER_ROOM = 3  # an agent that keeps dying in one room is a bug, not a crash to paper over
HISTORY = 1000  # what GET /redispatches shows, newest last


@dataclass
class Redispatch:
    room: str
    agent_name: str
    lost_identity: str
    reason: str
    left_at: float  # when the webhook saying it left arrived
    dispatched_at: float = 0.0
    dispatch_id: str = ""
    skipped: str = ""  # why nothing was dispatched


class Redispatcher:
    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        self.url, self.api_key, self.api_secret = url, api_key, api_secret
        self.receiver = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
        self.history: deque[Redispatch] = deque(maxlen=HISTORY)
        self._per_room: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:  # signed by the server with our key pair: nobody else can trigger dispatches
            event = self.receiver.receive(body, request.headers.get("Authorization", ""))
        except Exception:
            return web.json_response({"error": "invalid webhook signature"}, status=401)
        if event.event == "room_finished":
            self._per_room.pop(event.room.name, None)
        elif event.event == "participant_left" and _lost_agent(event.participant):
            p = event.participant
            if any(
                h.room == event.room.name and h.lost_identity == p.identity for h in self.history
            ):
                return web.json_response({})  # the same event again (a webhook retried)
            item = Redispatch(
                room=event.room.name,
                agent_name=p.attributes[AGENT_NAME_ATTRIBUTE],
                lost_identity=p.identity,
                reason=DisconnectReason.Name(p.disconnect_reason),
                left_at=time.time(),
            )
            self.history.append(item)
            # answer the server at once; the dispatch happens behind it
            task = asyncio.create_task(self.redispatch(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response({})

    async def redispatch(self, item: Redispatch) -> None:
        if self._per_room.get(item.room, 0) >= MAX_PER_ROOM:
            item.skipped = f"already dispatched {MAX_PER_ROOM} times in this room"
        else:
            try:
                async with api.LiveKitAPI(self.url, self.api_key, self.api_secret) as lk:
                    await self._dispatch(lk, item)
            except Exception as e:  # one room's failure must not stop the next webhook
                item.skipped = f"the server API failed: {type(e).__name__}: {e}"
        verb = f"skipped: {item.skipped}" if item.skipped else f"dispatched {item.dispatch_id}"
        logger.info(
            "room %s lost agent %s (%s, %s); %s",
            item.room,
            item.agent_name,
            item.lost_identity,
            item.reason,
            verb,
        )

    async def _dispatch(self, lk: api.LiveKitAPI, item: Redispatch) -> None:
        try:
            people = await lk.room.list_participants(api.ListParticipantsRequest(room=item.room))
        except api.TwirpError as e:  # the room is gone with its node, or closed meanwhile
            item.skipped = f"room not found ({e.message})"
            return
        if not any(p.kind != ParticipantInfo.Kind.AGENT for p in people.participants):
            item.skipped = "nobody left in the room"
            return
        if any(_agent_name(p) == item.agent_name for p in people.participants):
            item.skipped = "the agent is back already"
            return
        # the original dispatch carries the caller's settings (the `dispatch` layer): keep them
        dispatches = await lk.agent_dispatch.list_dispatch(item.room)
        metadata = next((d.metadata for d in dispatches if d.agent_name == item.agent_name), "")
        dispatch = await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=item.agent_name, room=item.room, metadata=metadata
            )
        )
        self._per_room[item.room] = self._per_room.get(item.room, 0) + 1
        item.dispatch_id, item.dispatched_at = dispatch.id, time.time()

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(item) for item in self.history])

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/", self.webhook)
        app.router.add_get("/redispatches", self.status)
        return app


def _agent_name(p: ParticipantInfo) -> str:
    return (
        p.attributes.get(AGENT_NAME_ATTRIBUTE, "") if p.kind == ParticipantInfo.Kind.AGENT else ""
    )


def _lost_agent(p: ParticipantInfo) -> bool:
    return bool(_agent_name(p)) and p.disconnect_reason in LOST


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m agent redispatch",
        description="Dispatch the agent again to rooms whose agent was lost (livekit-server webhooks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    settings = config.Settings.from_env()
    secret = settings.livekit_api_secret.get_secret_value()
    missing = [
        name
        for name, value in (
            ("LIVEKIT_URL", settings.livekit_url),
            ("LIVEKIT_API_KEY", settings.livekit_api_key),
            ("LIVEKIT_API_SECRET", secret),
        )
        if not value
    ]
    if missing:  # the key pair also checks the webhooks' signatures
        raise config.ConfigError(
            f"{', '.join(missing)} not set: the redispatcher calls the server's API "
            "with the same key pair the server signs its webhooks with"
        )
    redispatcher = Redispatcher(settings.livekit_url, settings.livekit_api_key, secret)
    logs.setup()
    print(f"redispatch webhook on http://{args.host}:{args.port}/", flush=True)
    web.run_app(redispatcher.app(), host=args.host, port=args.port, print=None)
