"""The redispatcher's webhook: only livekit-server's signed events count, and only an agent
lost (a timeout, a broken connection) with a caller still in the room is dispatched again.
The dispatch itself runs against a real cluster in test_e2e_cluster.py."""

import asyncio
import base64
import hashlib
import os

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.json_format import MessageToJson
from livekit import api
from livekit.protocol.models import DisconnectReason, ParticipantInfo

from agent.__main__ import main as agent_cli
from services.redispatch import Redispatcher
from tools.stack import free_port

pytestmark = pytest.mark.unit

KEY, SECRET = "devkey", "secret"


def _event(kind: int, reason: int, event: str = "participant_left") -> api.WebhookEvent:
    return api.WebhookEvent(
        event=event,
        room=api.Room(name="call-1"),
        participant=ParticipantInfo(
            identity="agent-AJ_1",
            kind=kind,
            disconnect_reason=reason,
            attributes={"lk.agent.name": "voice-agent"} if kind == ParticipantInfo.AGENT else {},
        ),
    )


def _signed(body: str, secret: str = SECRET) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return {"Authorization": api.AccessToken(KEY, secret).with_sha256(digest).to_jwt()}


@pytest_asyncio.fixture(loop_scope="function")  # the tests' loop must serve it
async def client():
    # nothing listens on this server URL: a dispatch attempt fails and says so
    redispatcher = Redispatcher(f"ws://127.0.0.1:{free_port()}", KEY, SECRET)
    async with TestClient(TestServer(redispatcher.app())) as c:
        c.redispatcher = redispatcher
        yield c


async def _post(client, event: api.WebhookEvent, secret: str = SECRET):
    body = MessageToJson(event)
    return await client.post("/", data=body, headers=_signed(body, secret))


async def test_unsigned_or_forged_webhooks_are_refused(client):
    event = _event(ParticipantInfo.AGENT, DisconnectReason.CONNECTION_TIMEOUT)
    forged = await _post(client, event, secret="not-the-secret")
    unsigned = await client.post("/", data=MessageToJson(event))
    assert (forged.status, unsigned.status) == (401, 401)
    assert not client.redispatcher.history


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (ParticipantInfo.AGENT, DisconnectReason.CLIENT_INITIATED),  # the agent said goodbye
        (ParticipantInfo.AGENT, DisconnectReason.PARTICIPANT_REMOVED),  # someone removed it
        (ParticipantInfo.AGENT, DisconnectReason.ROOM_DELETED),
        (ParticipantInfo.STANDARD, DisconnectReason.CONNECTION_TIMEOUT),  # a caller, not an agent
    ],
)
async def test_deliberate_departures_and_callers_are_left_alone(client, kind, reason):
    response = await _post(client, _event(kind, reason))
    assert response.status == 200
    assert not client.redispatcher.history


@pytest.mark.parametrize(
    "reason", [DisconnectReason.CONNECTION_TIMEOUT, DisconnectReason.SIGNAL_CLOSE]
)
async def test_a_lost_agent_is_dispatched_again_and_a_failure_is_reported(client, reason):
    response = await _post(client, _event(ParticipantInfo.AGENT, reason))
    assert response.status == 200  # answered at once; the dispatch runs behind it
    retried = await _post(client, _event(ParticipantInfo.AGENT, reason))  # a webhook sent again
    assert retried.status == 200
    (item,) = client.redispatcher.history
    assert (item.room, item.agent_name, item.lost_identity) == (
        "call-1",
        "voice-agent",
        "agent-AJ_1",
    )
    assert item.reason == DisconnectReason.Name(reason)
    for _ in range(100):
        if item.skipped:
            break
        await asyncio.sleep(0.05)
    assert item.skipped.startswith("the server API failed"), item.skipped
    status = await (await client.get("/redispatches")).json()
    assert status[0]["room"] == "call-1" and status[0]["dispatch_id"] == ""


def test_missing_keys_stop_it_at_startup_with_one_line(tmp_path, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("LIVEKIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LIVEKIT_URL", "ws://127.0.0.1:7880")
    monkeypatch.chdir(tmp_path)  # an empty folder: no .env with the keys in it
    with pytest.raises(SystemExit) as exited:  # `python -m agent redispatch`, in this process
        agent_cli(["redispatch", "--port", str(free_port())])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: LIVEKIT_API_KEY, LIVEKIT_API_SECRET not set: the redispatcher calls the server's "
        "API with the same key pair the server signs its webhooks with"
    ]
