"""The gateway against a hostile but fair client (issue 33): bad credentials, broken bodies,
wrong-shaped messages, oversized and endless uploads, crowds, idle sockets. Every answer is the
protocol's error and a 4xx, the log gets one line and no traceback, and the gateway still serves
a good request afterwards. Run in process, with small limits so that each is reached quickly."""

from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import logging
import socket
import threading
import time
import wave

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import api

from agent import logs
from services.gateway import engine
from services.gateway.limits import Limits
from services.gateway.server import make_app
from services.gateway.sessions import Gateway
from tools import stack

pytestmark = pytest.mark.unit

KEY, SECRET, CARTESIA_KEY = "devkey", "a-livekit-secret-for-the-hostile-tests", "hostile-key"
VERSION = "2025-04-16"
LIMITS = Limits(
    max_upload_bytes=2 * 1024 * 1024,
    max_audio_seconds=20,
    batch_concurrency=1,
    batch_queue=1,
    ws_idle_timeout=1.0,
)
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Recorder(logging.Handler):
    """Every log record of the process, from any thread (the server runs in its own)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def bad(self) -> list[str]:
        """Records with a traceback, or at ERROR and above."""
        return [
            f"{r.name}: {r.getMessage()}"
            for r in self.records
            if r.exc_info or r.levelno >= logging.ERROR
        ]


class Served:
    """The gateway app on a free loopback port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = stack.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gw = Gateway(KEY, SECRET, CARTESIA_KEY, limits=LIMITS)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(self.gw))
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(self, method, path, body=b"", headers=None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            # bytes as they are: a header need not be UTF-8 (http.client would say latin-1)
            conn.putheader(name, value.encode("latin-1") if isinstance(value, str) else value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, dict(res.getheaders()), data

    def close(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def recorder():
    handler = Recorder()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.server").addFilter(logs.one_line_for_bad_http)
    yield handler
    logging.getLogger("aiohttp.server").removeFilter(logs.one_line_for_bad_http)
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture(scope="module")
def gw(recorder):
    served = Served()
    yield served
    served.close()


@pytest.fixture
def clean_log(recorder, gw):
    """Asserts, after the test, that nothing it did logged a traceback or an error, and that
    the gateway still answers a good request."""
    before = len(recorder.records)
    yield
    bad = [
        f"{r.name}: {r.getMessage()}"
        for r in recorder.records[before:]
        if r.exc_info or r.levelno >= logging.ERROR
    ]
    assert not bad, bad
    assert_serves(gw)


def assert_serves(gw: Served) -> None:
    status, _, data = gw.request("POST", "/stt", *silent_upload(1.0))
    assert status == 200 and json.loads(data)["text"] == "", data
    created = gw.run(inference_session(gw.port, [{"type": "session.create", "settings": {}}]))
    assert created[0]["type"] == "session.created", created


# -- requests ----------------------------------------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return out.getvalue()


def multipart(fields: dict[str, bytes | str], boundary: str = "hostileboundary") -> bytes:
    parts = []
    for name, value in fields.items():
        filename = '; filename="audio.wav"' if isinstance(value, bytes) else ""
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'
        parts.append(head.encode() + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()


def upload_headers(boundary: str = "hostileboundary", **more: str) -> dict[str, str]:
    return {
        "X-API-Key": CARTESIA_KEY,
        "Cartesia-Version": VERSION,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        **more,
    }


def silent_upload(seconds: float, file: bytes | None = None) -> tuple[bytes, dict]:
    noise = np.random.default_rng(0).normal(0, 0.001, int(16000 * seconds))  # under SPEECH_RMS
    body = multipart({"file": file or wav_bytes(noise), "model": "ink-whisper"})
    return body, upload_headers()


def inference_token() -> str:
    grants = api.access_token.InferenceGrants(perform=True)
    return api.AccessToken(KEY, SECRET).with_inference_grants(grants).to_jwt()


async def inference_session(port: int, frames: list, read: int = 1) -> list[dict]:
    """Send `frames` (JSON-able, or str sent as is) on /v1/stt; the replies until `read` of them
    arrived or the socket closed."""
    replies: list[dict] = []
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/v1/stt"
        headers = {"Authorization": f"Bearer {inference_token()}"}
        async with http.ws_connect(url, headers=headers) as ws:
            for frame in frames:
                await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
            while len(replies) < read:
                msg = await ws.receive(timeout=20)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                replies.append(json.loads(msg.data))
    return replies


def cartesia_error(status: int, data: bytes, code: str | None = None) -> dict:
    body = json.loads(data)
    assert set(body) >= {"error_code", "title", "message", "request_id"}, body
    if code:
        assert body["error_code"] == code, body
    return body


# -- item 3 of the issue: non-UTF-8 credentials are wrong credentials, not 500s -----------------


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/stt", {"X-API-Key": "\xff"}),
        ("/stt", {"Authorization": "Bearer \xff\xfe"}),
        ("/access-token", {"Authorization": "Bearer \xff"}),
        ("/access-token", {"X-API-Key": "caf\xe9"}),
    ],
)
def test_non_utf8_credentials_on_http_routes_are_401(gw, clean_log, path, headers):
    body, base = silent_upload(0.5)
    del base["X-API-Key"]
    status, _, data = gw.request("POST", path, body, {**base, **headers})
    assert status == 401
    cartesia_error(status, data, "invalid_api_key")


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/stt/websocket?model=ink-whisper&encoding=pcm_s16le&sample_rate=16000", "X-API-Key"),
        ("/stt/turns/websocket?model=ink-2&encoding=pcm_s16le&sample_rate=16000", "X-API-Key"),
        ("/v1/stt", "Authorization"),
    ],
)
def test_non_utf8_credentials_on_websockets_are_401(gw, clean_log, path, headers):
    value = "Bearer \xff" if headers == "Authorization" else "\xff"
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Cartesia-Version": VERSION,
        headers: value,
    }
    status, _, _ = gw.request("GET", path, headers=upgrade)
    assert status == 401


# -- item 4: broken multipart ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("multipart/form-data; boundary=xx", b"garbage"),
        ("multipart/form-data", b"garbage"),
        ("multipart/form-data; boundary=xx", b"--xx\r\nContent-Disposition: nonsense\r\n\r\n"),
        ("multipart/form-data; boundary=xx", b"--xx\r\n\r\n\r\n--xx--"),
        ("multipart/form-data; boundary=" + "b" * 80, b"--x"),
    ],
)
def test_broken_multipart_is_a_400_in_cartesias_shape(gw, clean_log, content_type, body):
    headers = {**upload_headers(), "Content-Type": content_type}
    status, _, data = gw.request("POST", "/stt", body, headers)
    assert status == 400, data
    cartesia_error(status, data, "invalid_request")


# -- item 5: wrong-shaped JSON on the Inference websocket --------------------------------------

WRONG_SHAPES = [
    "1",
    "[]",
    '"session.create"',
    "null",
    "{",
    '{"type": 5}',
    '{"type": ["session.create"]}',
    {"type": "session.create", "settings": "x"},
    {"type": "session.create", "settings": {"language": 5}},
    {"type": "session.create", "settings": {"sample_rate": [16000]}},
    {"type": "session.create", "settings": {"sample_rate": True}},
    {"type": "session.create", "settings": {"extra": "x"}},
    {"type": "session.create", "settings": {"encoding": {"a": 1}}},
    {"type": "session.create", "model": 5},
    {"type": "session.create", "fallback": {"models": "x"}},
    {"type": "session.create", "fallback": {"models": [{"model": 1}]}},
    {"type": "session.create", "fallback": []},
]
AFTER_CREATE = [
    {"type": "input_audio", "audio": 5},
    {"type": "input_audio", "audio": "not base64!"},
    {"type": "session.update", "settings": "x"},
    {"type": "session.update", "settings": {"language": 5}},
    {"type": "session.update", "settings": {"extra": [1]}},
]


@pytest.mark.parametrize("frame", WRONG_SHAPES, ids=[str(f)[:40] for f in WRONG_SHAPES])
def test_wrong_shaped_first_messages_get_the_error_event(gw, clean_log, frame):
    replies = gw.run(inference_session(gw.port, [frame]))
    assert replies and replies[0]["type"] == "error" and replies[0]["code"] == 400, replies
    assert replies[0]["message"]


@pytest.mark.parametrize("frame", AFTER_CREATE, ids=[str(f)[:40] for f in AFTER_CREATE])
def test_wrong_shaped_later_messages_get_the_error_event(gw, clean_log, frame):
    replies = gw.run(
        inference_session(gw.port, [{"type": "session.create", "settings": {}}, frame], 2)
    )
    assert replies[0]["type"] == "session.created"
    assert replies[1]["type"] == "error" and replies[1]["code"] == 400, replies


def test_null_settings_leave_the_session_as_it_was(gw, clean_log):
    """Found by the fuzz test: `"model": null` in session.update and `"audio": null` were
    tracebacks; null is taken as absent."""
    nulls = {"model": None, "language": None, "extra": None, "encoding": None, "sample_rate": None}
    frames = [
        {"type": "session.create", "settings": nulls, "fallback": {"models": None}},
        {"type": "session.update", "settings": nulls},
        {"type": "input_audio", "audio": None},
        {"type": "session.close"},
    ]
    replies = gw.run(inference_session(gw.port, frames, read=2))
    assert [r["type"] for r in replies] == ["session.created", "session.closed"], replies


# -- item 11: Cartesia-Version, and huge requests ----------------------------------------------


@pytest.mark.parametrize("version", ["9999-99-99", "2099-01-01", "2025-02-30", "\xff"])
def test_unknown_cartesia_versions_are_refused(gw, clean_log, version):
    body, headers = silent_upload(0.5)
    status, _, data = gw.request("POST", "/stt", body, {**headers, "Cartesia-Version": version})
    assert status == 400
    cartesia_error(status, data, "invalid_version")


def test_a_20kb_header_or_url_is_a_400_and_one_warning(gw, recorder, clean_log):
    before = len(recorder.records)
    assert gw.request("GET", "/", headers={"X-Big": "a" * 20_000})[0] == 400
    assert gw.request("GET", "/?" + "a" * 20_000)[0] == 400
    time.sleep(0.2)
    lines = [r for r in recorder.records[before:] if r.name == "aiohttp.server"]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in lines)


# -- bounded resources -------------------------------------------------------------------------


def test_an_upload_over_the_size_limit_is_a_413(gw, clean_log):
    body, headers = silent_upload(0, file=b"\0" * (LIMITS.max_upload_bytes + 1))
    status, _, data = gw.request("POST", "/stt", body, headers)
    assert status == 413
    cartesia_error(status, data, "file_too_large")


def silence_file(seconds: float, fmt: str, codec: str, rate: int, **options: str) -> bytes:
    """`seconds` of silence encoded by FFmpeg (PyAV): small, whatever its length."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        chunk = np.zeros((1, rate), np.int16)
        for i in range(int(seconds)):
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.rate, frame.pts = rate, i * rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def flac_of_silence(seconds: float) -> bytes:
    """A FLAC whose header says how long it is."""
    return silence_file(seconds, "flac", "flac", 16000)


def live_webm(seconds: float) -> bytes:
    """A WebM written as a live stream: its header says no duration."""
    return silence_file(seconds, "webm", "libopus", 48000, live="1")


def test_a_long_file_is_refused_before_it_is_decoded(gw, clean_log):
    """Ten minutes of silence in a small FLAC: its header says how long, refused from that."""
    flac = flac_of_silence(600)
    assert len(flac) < LIMITS.max_upload_bytes
    body = multipart({"file": flac, "model": "ink-whisper"})
    status, _, data = gw.request("POST", "/stt", body, upload_headers())
    assert status == 413, data
    message = cartesia_error(status, data, "audio_too_long")["message"]
    assert "holds 600 s of audio, over the limit of 20 s" in message  # the header's figure


def test_a_file_whose_header_hides_its_length_stops_decoding_at_the_limit(gw, clean_log):
    """A live WebM declares no duration: decoding stops once it passes the limit."""
    status, _, data = gw.request("POST", "/stt", *silent_upload(0, file=live_webm(30)))
    assert status == 413, data
    assert "at least" in cartesia_error(status, data, "audio_too_long")["message"]


def test_raw_pcm_over_the_limit_is_refused_by_its_size(gw, clean_log):
    body = multipart({"file": b"\0" * (16000 * 2 * 30), "model": "ink-whisper"})
    path = "/stt?encoding=pcm_s16le&sample_rate=16000"
    status, _, data = gw.request("POST", path, body, upload_headers())
    assert status == 413
    cartesia_error(status, data, "audio_too_long")


def test_silence_is_transcribed_as_nothing(gw, clean_log):
    """Whisper says "you" on silence (75 times in 30 min of it): a silent file is empty text."""
    status, _, data = gw.request("POST", "/stt", *silent_upload(15))
    assert status == 200 and json.loads(data)["text"] == ""
    assert json.loads(data)["duration"] == pytest.approx(15, abs=0.1)


async def _hold_slots(gw: Served, held: int, release: asyncio.Event, entered: asyncio.Event):
    """Take the running slot and `held - 1` queue places, until `release` is set."""

    async def one() -> None:
        async with gw.gw.batch.slot():
            entered.set()
            await release.wait()

    tasks = [asyncio.create_task(one()) for _ in range(held)]
    await entered.wait()
    await asyncio.sleep(0.1)  # the others reach the queue
    return tasks


def test_beyond_the_slots_and_queue_a_batch_gets_429_with_retry_after(gw, clean_log):
    release, entered = asyncio.Event(), asyncio.Event()
    tasks = gw.run(_hold_slots(gw, 2, release, entered))  # 1 transcribing, 1 waiting
    try:
        status, headers, data = gw.request("POST", "/stt", *silent_upload(1))
        assert status == 429, data
        assert int(headers["Retry-After"]) > 0
        cartesia_error(status, data, "too_many_requests")
    finally:
        gw.loop.call_soon_threadsafe(release.set)
        gw.run(asyncio.wait(tasks))


def test_a_client_that_hangs_up_while_queued_costs_no_transcription(gw, recorder, clean_log):
    release, entered = asyncio.Event(), asyncio.Event()
    tasks = gw.run(_hold_slots(gw, 1, release, entered))
    before = len(recorder.records)
    try:
        body, headers = silent_upload(1)
        conn = socket.create_connection(("127.0.0.1", gw.port))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(
            f"POST /stt HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.5)  # its request is read and waits in the queue
        conn.close()
        time.sleep(0.5)
    finally:
        gw.loop.call_soon_threadsafe(release.set)
        gw.run(asyncio.wait(tasks))
    for _ in range(50):
        if any("hung up" in r.getMessage() for r in recorder.records[before:]):
            break
        time.sleep(0.1)
    assert any("hung up" in r.getMessage() for r in recorder.records[before:])


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/v1/stt", "inference"),
        ("/stt/websocket?model=ink-whisper&encoding=pcm_s16le&sample_rate=16000", "cartesia"),
        ("/stt/turns/websocket?model=ink-2&encoding=pcm_s16le&sample_rate=16000", "cartesia"),
    ],
)
def test_an_idle_websocket_is_told_and_closed(gw, clean_log, path, headers):
    async def idle() -> list[dict]:
        auth = (
            {"Authorization": f"Bearer {inference_token()}"}
            if headers == "inference"
            else {"X-API-Key": CARTESIA_KEY, "Cartesia-Version": VERSION}
        )
        events = []
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{gw.base}{path}", headers=auth) as ws,
        ):
            async for msg in ws:
                events.append(json.loads(msg.data))
        return events

    events = gw.run(idle())  # it never closes: a timeout here
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == 408, events
    assert "GATEWAY_WS_IDLE_TIMEOUT" in errors[0]["message"]


def test_a_flood_of_audio_is_read_at_real_time_pace_past_the_allowance(gw, clean_log, monkeypatch):
    """Audio sent faster than real time is taken at once up to MAX_AHEAD_SECONDS ahead, then
    read at real-time pace (TCP holds the rest back), not queued in the gateway's memory."""
    monkeypatch.setattr(engine, "MAX_AHEAD_SECONDS", 1.0)

    async def flood() -> float:
        query = "model=ink-whisper&encoding=pcm_s16le&sample_rate=16000"
        headers = {"X-API-Key": CARTESIA_KEY, "Cartesia-Version": VERSION}
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{gw.base}/stt/websocket?{query}", headers=headers) as ws,
        ):
            start = time.monotonic()
            for _ in range(40):  # 4 s of silence, 100 ms a message
                await ws.send_bytes(bytes(3200))
            await ws.send_str("finalize")
            while (await ws.receive_json(timeout=30))["type"] != "flush_done":
                pass
            return time.monotonic() - start

    assert gw.run(flood()) >= 2.5  # 3 s past the allowance (silence takes the engine ~0.1 s)


def test_sessions_need_the_key(gw, clean_log):
    assert gw.request("GET", "/sessions")[0] == 401
    assert gw.request("GET", "/sessions", headers={"X-API-Key": "wrong"})[0] == 401
    status, _, data = gw.request("GET", "/sessions", headers={"X-API-Key": CARTESIA_KEY})
    assert status == 200 and isinstance(json.loads(data), list)


# -- fuzzing: per route and per websocket message type -----------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)
header_values = st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b),
    st.sampled_from([CARTESIA_KEY, f"Bearer {CARTESIA_KEY}", VERSION, "2026-08-14", ""]).map(
        str.encode
    ),
)
form_values = st.one_of(st.text(max_size=30), st.binary(max_size=200))


def assert_no_5xx_or_traceback(recorder: Recorder, before: int, status: int, data: bytes) -> None:
    assert status < 500, data
    bad = [
        f"{r.name}: {r.getMessage()}"
        for r in recorder.records[before:]
        if r.exc_info or r.levelno >= logging.ERROR
    ]
    assert not bad, bad


@FUZZ
@given(
    path=st.sampled_from(["/stt", "/audio/transcriptions", "/access-token"]),
    headers=st.dictionaries(
        st.sampled_from(["X-API-Key", "Authorization", "Cartesia-Version", "Content-Type"]),
        header_values,
    ),
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["file", "model", "language", "timestamp_granularities[]", "x"]),
            form_values,
            max_size=4,
        ).map(multipart),
    ),
    query=st.sampled_from(
        ["", "?encoding=pcm_s16le&sample_rate=16000", "?encoding=x&sample_rate=y"]
    ),
)
def test_fuzzed_http_requests(gw, recorder, path, headers, body, query):
    before = len(recorder.records)
    status, head, data = gw.request("POST", path + query, body, headers)
    assert_no_5xx_or_traceback(recorder, before, status, data)
    if head.get("Content-Type", "").startswith("application/json"):
        if status >= 400:
            cartesia_error(status, data)
    else:  # not even HTTP (a control character in a header): aiohttp's own 400
        assert status == 400, data


@FUZZ
@given(headers=st.dictionaries(st.sampled_from(["X-API-Key", "Authorization"]), header_values))
def test_fuzzed_sessions_and_status(gw, recorder, headers):
    before = len(recorder.records)
    for path in ("/sessions", "/"):
        status, _, data = gw.request("GET", path, headers=headers)
        assert_no_5xx_or_traceback(recorder, before, status, data)


settings_values = st.fixed_dictionaries(
    {},
    optional={
        "language": st.one_of(st.sampled_from(["en", "de", "xx", ""]), json_values),
        "sample_rate": st.one_of(st.sampled_from(["16000", 8000, "0", "abc"]), json_values),
        "encoding": st.one_of(st.sampled_from(["pcm_s16le", "pcm_f32le", "mp3"]), json_values),
        "extra": st.one_of(
            st.dictionaries(st.text(max_size=15), json_values, max_size=3), json_values
        ),
        "model": json_values,
    },
)
MESSAGES = {
    "session.create": st.fixed_dictionaries(
        {"type": st.just("session.create")},
        optional={
            "settings": st.one_of(settings_values, json_values),
            "model": st.one_of(
                st.sampled_from(["cartesia/ink-whisper", "auto", "nope"]), json_values
            ),
            "fallback": st.one_of(
                st.fixed_dictionaries(
                    {
                        "models": st.lists(
                            st.dictionaries(st.sampled_from(["model", "extra"]), json_values),
                            max_size=2,
                        )
                    }
                ),
                json_values,
            ),
        },
    ),
    "input_audio": st.fixed_dictionaries(
        {"type": st.just("input_audio")},
        optional={
            "audio": st.one_of(
                st.binary(max_size=3200).map(lambda b: base64.b64encode(b).decode()), json_values
            )
        },
    ),
    "session.update": st.fixed_dictionaries(
        {"type": st.just("session.update")},
        optional={"settings": st.one_of(settings_values, json_values)},
    ),
    "session.finalize": st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
        lambda d: {**d, "type": "session.finalize"}
    ),
    "session.close": st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
        lambda d: {**d, "type": "session.close"}
    ),
}


@pytest.mark.parametrize("kind", MESSAGES)
def test_fuzzed_inference_messages(gw, recorder, kind):
    @FUZZ
    @given(message=MESSAGES[kind], raw=st.one_of(st.none(), st.text(max_size=40)))
    def fuzz(message, raw):
        before = len(recorder.records)
        frames = [message] if kind == "session.create" else [CREATE, message]
        if raw is not None:
            frames.append(raw)  # and whatever text follows
        replies = gw.run(inference_session(gw.port, [*frames, {"type": "session.close"}], read=20))
        assert all(r.get("code", 400) < 500 for r in replies), replies
        assert all(r["type"] != "error" or r["message"] for r in replies), replies
        assert_no_5xx_or_traceback(recorder, before, 101, b"")

    fuzz()
    assert_serves(gw)


CREATE = {"type": "session.create", "settings": {"sample_rate": "16000", "encoding": "pcm_s16le"}}

CARTESIA_ROUTES = {
    "/stt/websocket": "model=ink-whisper",
    "/stt/turns/websocket": "model=ink-2",
}


@pytest.mark.parametrize("route", CARTESIA_ROUTES)
def test_fuzzed_cartesia_websocket_frames(gw, recorder, route):
    frames = st.lists(
        st.one_of(
            st.binary(max_size=3200),
            st.text(max_size=40),
            st.sampled_from(["finalize", "close", "done"]),
            json_values.map(json.dumps),
            st.fixed_dictionaries({"type": st.just("config"), "turn": json_values}).map(json.dumps),
        ),
        max_size=4,
    )
    query = st.fixed_dictionaries(
        {},
        optional={
            "language": st.sampled_from(["en", "de", "xx", "%FF", ""]),
            "encoding": st.sampled_from(["pcm_s16le", "pcm_f32le", "pcm_mulaw", "x"]),
            "sample_rate": st.sampled_from(["16000", "8000", "1", "x", "1e400"]),
            "min_volume": st.sampled_from(["0.1", "x", "-1", "nan"]),
            "max_silence_duration_secs": st.sampled_from(["0.3", "x", "1e9"]),
        },
    )

    async def session(params: dict, sent: list) -> list[dict]:
        url = f"{gw.base}{route}?{CARTESIA_ROUTES[route]}&" + "&".join(
            f"{k}={v}"
            for k, v in {"encoding": "pcm_s16le", "sample_rate": "16000", **params}.items()
        )
        headers = {"X-API-Key": CARTESIA_KEY, "Cartesia-Version": VERSION}
        out = []
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url, headers=headers)
            except aiohttp.WSServerHandshakeError as e:
                assert e.status < 500
                return []
            async with ws:
                for frame in sent:
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                await ws.send_str('{"type": "close"}' if "turns" in route else "close")
                while True:
                    msg = await ws.receive(timeout=20)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    out.append(json.loads(msg.data))
                    if out[-1]["type"] == "done":
                        break
        return out

    @FUZZ
    @given(params=query, sent=frames)
    def fuzz(params, sent):
        before = len(recorder.records)
        events = gw.run(session(params, sent))
        assert all(e.get("status_code", 400) < 500 for e in events), events
        assert_no_5xx_or_traceback(recorder, before, 101, b"")

    fuzz()
    assert_serves(gw)
