"""Secrets stay out of logs (issue 33): after a call, gateway traffic with keys and tokens, and
whatever else ran in this session, no log under artifacts/ (tools/stack.py's) holds a JWT signed with the stack's key, the
LiveKit API secret or the gateway's Cartesia key. livekit-server at debug level logged every
participant's refreshToken and, with --dev's placeholder keys, the API secret."""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.error
import urllib.request
import wave

import aiohttp
import jwt
import numpy as np
import pytest

from tools import stack
from tools.caller import Caller

pytestmark = pytest.mark.e2e

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def live(token: bytes) -> bool:
    """A token signed with this stack's secret would let its reader in; one a client forged
    with another key (livekit-server logs those it refuses, with their text) would not."""
    try:
        jwt.decode(token, stack.API_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    except jwt.InvalidTokenError:
        return False
    return True


# where each log stood when this session began (collection runs first): only what this
# session wrote is judged, not the logs of older runs
ARTIFACTS_AT_START = (
    {path: path.stat().st_size for path in stack.ARTIFACTS.glob("*.log")}
    if stack.ARTIFACTS.exists()
    else {}
)


# the page's own console, in the caller's browser: livekit-client may print the URL it dials,
# with the caller's own token, which the page fetched for itself. Not a log of the stack's.
CLIENT_SIDE = {"browser-console.log"}


def written_this_session() -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()[ARTIFACTS_AT_START.get(path, 0) :]
        for path in stack.ARTIFACTS.glob("*.log")
        if path.name not in CLIENT_SIDE
    }


def silent_wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), np.int16).tobytes())
    return out.getvalue()


async def use_the_gateway(gateway: stack.Gateway) -> None:
    """A batch file with the key, an access token, a websocket session with that token."""
    headers = {"X-API-Key": gateway.cartesia_key, "Cartesia-Version": "2025-04-16"}
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", silent_wav(1), filename="a.wav")
        form.add_field("model", "ink-whisper")
        async with http.post(f"{gateway.base}/stt", data=form, headers=headers) as r:
            assert r.status == 200, await r.text()
        async with http.post(
            f"{gateway.base}/access-token", json={"grants": {"stt": True}}, headers=headers
        ) as r:
            token = (await r.json())["token"]
        query = "model=ink-whisper&encoding=pcm_s16le&sample_rate=16000&cartesia_version=2025-04-16"
        async with http.ws_connect(
            f"{gateway.base}/stt/websocket?{query}&access_token={token}"
        ) as ws:
            await ws.send_bytes(np.zeros(3200, np.int16).tobytes())
            await ws.send_str("close")
            async for msg in ws:
                if json.loads(msg.data)["type"] == "done":
                    break


async def one_call(livekit_server: stack.Server, worker: stack.Worker) -> None:
    async with Caller(
        livekit_server.url, stack.API_KEY, stack.API_SECRET, worker.agent_name
    ) as caller:
        await caller.wait_for_greeting()


def test_no_log_holds_a_token_or_a_secret(livekit_server, worker, gateway):
    asyncio.run(one_call(livekit_server, worker))
    asyncio.run(use_the_gateway(gateway))
    assert gateway.sessions()  # GET /sessions with the key
    with pytest.raises(urllib.error.HTTPError):  # and without it
        urllib.request.urlopen(f"{gateway.base}/sessions")

    logs = written_this_session()
    assert any("livekit-server" in name for name in logs) and any(
        name.startswith("worker") for name in logs
    ), sorted(logs)
    secrets = [stack.API_SECRET.encode(), gateway.cartesia_key.encode()]
    found = {
        name: [m.group(0)[:20] for m in JWT.finditer(text) if live(m.group(0))]
        + [s.decode()[:6] + "..." for s in secrets if s in text]
        for name, text in logs.items()
    }
    assert not {name: hits for name, hits in found.items() if hits}
