"""The token endpoint over real HTTP: the tokens it mints, and every way it says no."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading

import jwt
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import api
from pydantic import SecretStr

from agent import config
from agent.web import FIELDS, MAX_BODY, make_app
from tools import stack

pytestmark = pytest.mark.unit

API_SECRET = "an-api-secret-that-must-never-leak-0123456789"
ENDPOINT_SECRET = "endpoint-secret-9f8e7d6c5b4a"
AGENT = "test-agent"
ALLOWED = "http://app.example.test"


class Served:
    """make_app(settings) on a free loopback port, in a thread with its own event loop."""

    def __init__(self, settings: config.Settings) -> None:
        self.port = stack.free_port()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(settings))
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def request(self, method, path, body=b"", headers=None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, dict(res.getheaders()), data

    def post(self, body, headers=None) -> tuple[int, dict, dict]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, head, data = self.request(
            "POST", "/api/token", raw, {"Content-Type": "application/json", **(headers or {})}
        )
        return status, head, json.loads(data)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def make_settings(**extra) -> config.Settings:
    return config.Settings(
        livekit_url="ws://127.0.0.1:7880",
        livekit_api_key="devkey",
        livekit_api_secret=SecretStr(API_SECRET),
        agent_name=AGENT,
        web_allowed_origins=ALLOWED,
        **extra,
    )


@pytest.fixture(scope="module")
def dev():
    server = Served(make_settings())
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded():
    server = Served(make_settings(token_endpoint_secret=SecretStr(ENDPOINT_SECRET)))
    yield server
    server.close()


def verify(token: str) -> api.Claims:
    return api.TokenVerifier("devkey", API_SECRET).verify(token)


def test_token_shape_grants_and_ttl(dev):
    status, _, body = dev.post(
        {
            "room_name": "kitchen-1",
            "participant_identity": "alice_1",
            "participant_name": "Alice Ô",
            "participant_attributes": {"language": "en", "stt": "local/moonshine-tiny"},
        }
    )
    assert status == 200, body
    assert set(body) == {"server_url", "participant_token"}
    assert body["server_url"] == "ws://127.0.0.1:7880"
    claims = verify(body["participant_token"])
    assert claims.identity == "alice_1" and claims.name == "Alice Ô"
    assert claims.attributes == {"language": "en", "stt": "local/moonshine-tiny"}
    video = claims.video
    assert video.room_join and video.room == "kitchen-1"
    assert video.can_publish and video.can_publish_sources == ["microphone"]
    assert video.can_publish_data and video.can_subscribe and video.can_update_own_metadata
    for power in ("room_create", "room_list", "room_admin", "room_record", "ingress_admin"):
        assert not getattr(video, power), power
    assert [a.agent_name for a in claims.room_config.agents] == [AGENT]
    raw = jwt.decode(body["participant_token"], options={"verify_signature": False})
    assert 0 < raw["exp"] - raw["nbf"] <= 15 * 60
    assert "sip" not in raw and "agent" not in raw


def test_empty_body_gets_a_fresh_room_and_identity(dev):
    first = verify(dev.post(b"")[2]["participant_token"])
    second = verify(dev.post({})[2]["participant_token"])
    assert first.video.room and first.identity
    assert (first.video.room, first.identity) != (second.video.room, second.identity)


def test_room_config_naming_our_agent_is_accepted(dev):
    status, _, body = dev.post({"room_config": {"agents": [{"agent_name": AGENT}]}})
    assert status == 200, body
    assert [a.agent_name for a in verify(body["participant_token"]).room_config.agents] == [AGENT]


MALFORMED = [
    (b"{", 400),
    (b"[1, 2]", 400),
    (b'"room"', 400),
    (b"\xff\xfe", 400),
    (b"[" * 5000 + b"]" * 5000, 400),
    ({"room_name": ""}, 400),
    ({"room_name": "a" * 65}, 400),
    ({"room_name": "../admin"}, 400),
    ({"room_name": 7}, 400),
    ({"participant_identity": "al ice"}, 400),
    ({"participant_identity": ["x"]}, 400),
    ({"participant_name": "x" * 65}, 400),
    ({"participant_name": "bell\x07"}, 400),
    ({"participant_metadata": {"a": 1}}, 400),
    ({"participant_attributes": "language=en"}, 400),
    ({"participant_attributes": {"language": 1}}, 400),
    ({"participant_attributes": {"lk.agent.state": "speaking"}}, 400),
    ({"participant_attributes": {"bad key": "x"}}, 400),
    ({"participant_attributes": {"x": "y" * 257}}, 400),
    ({"participant_attributes": {f"k{i}": "v" for i in range(17)}}, 400),
    ({"participant_attributes": {"stt": "nope/model"}}, 400),
    ({"room_config": "x"}, 403),
    ({"room_config": {"agents": [{"agent_name": "someone-else"}]}}, 403),
    ({"room_config": {"agents": [{"agent_name": AGENT, "metadata": "x"}]}}, 403),
    ({"room_config": {"empty_timeout": 1}}, 403),
    ({"room_config": {"agents": "all"}}, 403),
    ({"can_publish": True}, 400),
    ({"room_name": "r", "ttl": 999999}, 400),
]


@pytest.mark.parametrize("body,status", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_bodies_are_refused_with_json(dev, body, status):
    got, _, answer = dev.post(body)
    assert got == status, answer
    assert answer["error"]


def test_oversized_wrong_type_wrong_method_and_unknown_path(dev):
    status, _, data = dev.request(
        "POST", "/api/token", b"{" + b" " * MAX_BODY + b"}", {"Content-Type": "application/json"}
    )
    assert status == 413 and json.loads(data)["error"]
    status, _, data = dev.request("POST", "/api/token", b"{}", {"Content-Type": "text/plain"})
    assert status == 415 and json.loads(data)["error"]
    status, _, data = dev.request("GET", "/api/token")
    assert status == 405 and json.loads(data)["error"]
    status, _, data = dev.request("GET", "/api/nothing")
    assert status == 404 and json.loads(data)["error"]


def test_the_secret_is_required_when_set(guarded):
    assert guarded.post({})[0] == 401
    assert guarded.post({}, {"Authorization": "Bearer wrong"})[0] == 401
    assert guarded.post({}, {"Authorization": ENDPOINT_SECRET})[0] == 401  # no scheme
    status, _, body = guarded.post({}, {"Authorization": f"Bearer {ENDPOINT_SECRET}"})
    assert status == 200 and verify(body["participant_token"]).video.room_join


def test_cross_origin_requests_need_an_allowed_origin(dev):
    status, _, body = dev.post({}, {"Origin": "http://evil.example"})
    assert status == 403 and "not allowed" in body["error"]
    status, head, _ = dev.post({}, {"Origin": ALLOWED})
    assert status == 200 and head["Access-Control-Allow-Origin"] == ALLOWED
    status, head, _ = dev.request(
        "OPTIONS",
        "/api/token",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and "Authorization" in head["Access-Control-Allow-Headers"]
    same = f"http://127.0.0.1:{dev.port}"
    status, head, _ = dev.post({}, {"Origin": same})
    assert status == 200 and "Access-Control-Allow-Origin" not in head


def test_catalog_offers_what_this_setup_can_run(dev):
    status, _, data = dev.request("GET", "/api/catalog")
    assert status == 200
    catalog = json.loads(data)
    models = {m["id"]: m for m in catalog["stt"]}
    assert models["local/moonshine-tiny"]["available"]
    assert models["local/moonshine-tiny"]["languages"] == ["en"]
    # offline, cloud models are listed but marked, with the reason
    assert not models["deepgram/nova-3"]["available"]
    assert "LiveKit Inference" in models["deepgram/nova-3"]["why"]
    # the default is the local counterpart of `auto`: the language picks the engine
    assert catalog["default"] == {"stt": "local/auto", "language": "en"}
    assert len(models["local/auto"]["languages"]) == 101  # Whisper's 100 and multi
    assert "multi" in models["local/auto"]["languages"]
    assert "fr" in catalog["languages"]


def test_binding_beyond_loopback_needs_the_secret():
    env = {k: v for k, v in os.environ.items() if k != "TOKEN_ENDPOINT_SECRET"}
    env.update(LIVEKIT_URL="ws://127.0.0.1:7880", LIVEKIT_API_KEY="k", LIVEKIT_API_SECRET="s")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "web", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=stack.ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: refusing") and "TOKEN_ENDPOINT_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


# -- fuzzing: whatever arrives, the answer is never a 5xx and never holds a secret -----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(sorted(FIELDS))
# values aimed at what is parsed further: the stt descriptor and the room configuration
targeted = st.fixed_dictionaries(
    {},
    optional={
        "participant_attributes": st.fixed_dictionaries(
            {"stt": st.text(max_size=40)}, optional={"language": st.text(max_size=10)}
        ),
        "room_config": st.fixed_dictionaries(
            {"agents": st.lists(st.dictionaries(st.text(max_size=12), json_values), max_size=2)}
        ),
    },
)
bodies = st.one_of(
    st.dictionaries(field_names, json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
    targeted.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_clean(status: int, data: bytes) -> None:
    assert status < 500, data
    assert API_SECRET.encode() not in data and ENDPOINT_SECRET.encode() not in data


@FUZZ
@given(body=bodies)
def test_fuzzed_bodies_never_fail_the_server(dev, body):
    status, _, data = dev.request("POST", "/api/token", body, {"Content-Type": "application/json"})
    _assert_clean(status, data)
    assert json.loads(data)  # every answer, success or refusal, is JSON


@FUZZ
@given(
    body=bodies,
    auth=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126))),
)
def test_fuzzed_requests_with_credentials_never_fail_or_leak(guarded, body, auth):
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    status, _, data = guarded.request("POST", "/api/token", body, headers)
    _assert_clean(status, data)
    assert status == 401


def test_catalog_says_where_each_model_runs():
    """With the local gateway (what scripts/up.sh starts), the cloud STT models are offered and
    marked as running on the gateway; the embedded engines run on this machine."""
    from agent import config, web

    env = {"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}
    gateway = {**env, "LIVEKIT_INFERENCE_URL": "http://127.0.0.1:8089/v1"}
    models = {
        m["id"]: m for m in web.catalog_json(config.Settings.from_env(gateway, dotenv=False))["stt"]
    }
    assert models["cartesia/ink-whisper"]["available"] and models["cartesia/ink-2"]["available"]
    assert models["cartesia/ink-whisper"]["runs"] == "local gateway"
    assert models["local/moonshine-tiny"]["runs"] == "this machine"
    offline = web.catalog_json(config.Settings.from_env(env, dotenv=False))["stt"]
    assert {m["id"]: m["runs"] for m in offline}["cartesia/ink-whisper"] == "not reachable"
