"""The local gateway, driven by the real clients: livekit.agents.inference.STT and the
livekit-plugins-cartesia STT, streaming speech synthesized by Hibari."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from livekit import api, rtc
from livekit.agents import APIConnectOptions, APIError, APIStatusError, inference, stt, utils
from livekit.plugins import cartesia

from agent import config
from services.gateway.server import make_app
from services.gateway.sessions import Gateway
from tests.speech import DICKENS, DICKENS_SAID, silence, spoken_16k
from tools.stack import free_port
from tools.wer import wer

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

PORT, CLI_PORT = free_port(), free_port()  # free ports: test runs side by side do not collide
BASE = f"http://127.0.0.1:{PORT}"
KEY, SECRET, CARTESIA_KEY = "devkey", "secret", "test-cartesia-key"
RATE = 16000
SENTENCES = (
    "Hello, I would like to book a table for two people tomorrow evening.",
    "The weather in Paris is lovely in the spring.",
)
NO_RETRY = APIConnectOptions(max_retry=0, timeout=10)


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return [spoken_16k(s) for s in SENTENCES]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway_http():
    """An HTTP client of a gateway app run in this test process (the subprocess one is `gateway`)."""
    runner = web.AppRunner(make_app(Gateway(KEY, SECRET, CARTESIA_KEY)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    async with aiohttp.ClientSession() as http:
        yield http
    await runner.cleanup()


async def sessions(http: aiohttp.ClientSession) -> list[dict]:
    async with http.get(f"{BASE}/sessions", headers={"X-API-Key": CARTESIA_KEY}) as r:
        return await r.json()


def frames(samples: np.ndarray, rate: int = RATE) -> list[rtc.AudioFrame]:
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    step = rate // 50  # 20 ms, as a microphone track delivers them
    return [
        rtc.AudioFrame(pcm[i : i + step].tobytes(), rate, 1, len(pcm[i : i + step]))
        for i in range(0, len(pcm), step)
    ]


def push(stream, samples: np.ndarray) -> None:
    for f in frames(samples):
        stream.push_frame(f)


async def speak(stream, samples: np.ndarray) -> None:
    """At 4x real time, as fast as a call could go: the gateway's Moonshine stream, as a
    call's, skips interims while it runs behind its input (audio sent all at once gets none),
    and the transcripts come while the audio does."""
    for f in frames(samples):
        stream.push_frame(f)
        await asyncio.sleep(0.005)


async def collect(stream) -> list[stt.SpeechEvent]:
    return [ev async for ev in stream]


def finals(events: list[stt.SpeechEvent]) -> list[stt.SpeechData]:
    return [e.alternatives[0] for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]


async def say_once(stream, sentence: np.ndarray) -> list[stt.SpeechData]:
    """One sentence and a short silence through a stream, then its input ends: the finals."""
    events = asyncio.create_task(collect(stream))
    push(stream, np.concatenate([sentence, silence(0.5)]))
    stream.end_input()
    return finals(await events)


def inference_stt(http, **kwargs) -> inference.STT:
    kwargs = {"model": "cartesia/ink-whisper", "language": "en", **kwargs}
    return inference.STT(
        base_url=f"{BASE}/v1", api_key=KEY, api_secret=SECRET, http_session=http, **kwargs
    )


async def wait_for(http, first: int, predicate, what: str, seconds: float = 30) -> dict:
    """The newest session (of those from index `first` on) once `predicate` is true of it."""
    for _ in range(int(seconds * 10)):
        latest = (await sessions(http))[first:]
        if latest and predicate(latest[-1]):
            return latest[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"gateway never reported {what}: {latest}")


# -- LiveKit Inference ---------------------------------------------------------------------------


async def test_inference_transcribes_and_records_the_session(gateway_http, speech):
    client = inference_stt(
        gateway_http, extra_kwargs={"min_volume": 0.001, "max_silence_duration_secs": 0.6}
    )
    stream = client.stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    await speak(stream, np.concatenate([speech[0], silence(1.5), speech[1], silence(0.5)]))
    stream.end_input()
    got = await events

    text = " ".join(d.text for d in finals(got))
    assert wer(" ".join(SENTENCES), text) <= 0.25, text
    assert any(e.type == stt.SpeechEventType.INTERIM_TRANSCRIPT for e in got)
    assert all(d.language == "en" for d in finals(got))
    assert all(d.end_time > d.start_time for d in finals(got))

    record = (await sessions(gateway_http))[-1]
    assert record["route"] == "inference"
    assert record["model"] == "cartesia/ink-whisper"
    assert record["language"] == "en"
    assert record["options"] == {"min_volume": 0.001, "max_silence_duration_secs": 0.6}
    assert (record["sample_rate"], record["encoding"]) == (16000, "pcm_s16le")
    assert record["subject"] == "agent"  # the identity inference.STT's token carries
    assert record["error"] is None and record["finalized"]
    assert "secret" not in str(record).lower()


async def test_update_options_reaches_the_gateway(gateway_http, speech):
    first = len(await sessions(gateway_http))
    client = inference_stt(gateway_http)
    stream = client.stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    push(stream, speech[0])
    await wait_for(gateway_http, first, lambda s: s["audio_seconds"] > 0, "audio")
    client.update_options(language="fr")  # what the agent calls; it reaches live streams
    await wait_for(gateway_http, first, lambda s: s["updates"], "the session.update")
    push(stream, speech[1])
    stream.end_input()
    got = await events

    record = (await sessions(gateway_http))[-1]
    assert record["updates"] == [{"language": "fr"}]
    assert record["language"] == "en" and record["settings"]["language"] == "fr"
    # Moonshine hears English either way; the results carry the language now asked for
    assert finals(got) and finals(got)[-1].language == "fr"


async def test_production_descriptor_runs_through_the_gateway(gateway_http, speech, monkeypatch):
    """STT=cartesia/ink-whisper:en, unchanged: the string LiveKit resolves from the environment,
    and what config.build makes of it when LIVEKIT_INFERENCE_URL is set."""
    monkeypatch.setenv("LIVEKIT_INFERENCE_URL", f"{BASE}/v1")
    monkeypatch.setenv("LIVEKIT_API_KEY", KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    settings = config.Settings.from_env(
        {
            "STT": "cartesia/ink-whisper:en",
            "LIVEKIT_INFERENCE_URL": f"{BASE}/v1",
            "LIVEKIT_API_KEY": KEY,
            "LIVEKIT_API_SECRET": SECRET,
        }
    )
    plan = config.resolve(settings)
    desc = plan.stt[0]
    built = config.build(desc, plan)
    from_string = inference.STT.from_model_string(str(desc))
    assert isinstance(built, inference.STT)
    # outside a job, plugins take their http session from this context
    async with utils.http_context.open():
        for client in (built, from_string):
            got = await say_once(client.stream(conn_options=NO_RETRY), speech[1])
            text = " ".join(d.text for d in got)
            assert wer(SENTENCES[1], text) <= 0.25, text
            record = (await sessions(gateway_http))[-1]
            assert (record["model"], record["language"]) == ("cartesia/ink-whisper", "en")


async def test_bad_token_is_refused_before_the_upgrade(gateway_http, speech):
    before = len(await sessions(gateway_http))
    client = inference.STT(
        "cartesia/ink-whisper",
        base_url=f"{BASE}/v1",
        api_key=KEY,
        api_secret="not-the-secret",
        http_session=gateway_http,
    )
    stream = client.stream(conn_options=NO_RETRY)
    push(stream, speech[0][:RATE])
    stream.end_input()
    with pytest.raises(APIStatusError) as e:
        await collect(stream)
    assert e.value.status_code == 401
    assert len(await sessions(gateway_http)) == before


async def test_token_without_the_inference_grant_is_forbidden(gateway_http):
    token = api.AccessToken(KEY, SECRET).with_identity("agent").to_jwt()
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await gateway_http.ws_connect(
            f"{BASE}/v1/stt?model=cartesia/ink-whisper",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert e.value.status == 403


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"model": "cartesia/ink-9"}, "unknown STT model 'cartesia/ink-9'"),
        ({"language": "xx"}, "does not support language 'xx'"),
        ({"extra_kwargs": {"min_volume": 2}}, "min_volume=2 is out of range [0.0, 1.0]"),
        ({"extra_kwargs": {"endpointing": 300}}, "'endpointing' does not apply"),
    ],
)
async def test_bad_parameters_get_an_error_message(gateway_http, speech, kwargs, reason):
    stream = inference_stt(gateway_http, **kwargs).stream(conn_options=NO_RETRY)
    push(stream, speech[0][:RATE])
    with pytest.raises(APIError) as e:
        await collect(stream)
    assert e.value.body == {"code": 400}
    record = (await sessions(gateway_http))[-1]
    assert reason in record["error"] and not record["finals"]


@pytest.mark.parametrize("scale, heard", [(1.0, True), (0.01, False)])
async def test_min_volume_gates_quiet_audio(gateway_http, speech, scale, heard):
    first = len(await sessions(gateway_http))
    stream = inference_stt(gateway_http, extra_kwargs={"min_volume": 0.02}).stream(
        conn_options=NO_RETRY
    )
    events = asyncio.create_task(collect(stream))
    audio = np.concatenate([speech[0], silence(0.5)]) * scale
    push(stream, audio)
    # the client stops listening 3 s after a final once its input ended: let the gateway
    # hear everything first, so a busy machine does not cut the last final off
    await wait_for(
        gateway_http,
        first,
        lambda s: s["audio_seconds"] >= len(audio) / RATE - 0.05,
        "all the audio",
    )
    stream.end_input()
    record = await wait_for(gateway_http, first, lambda s: s["finalized"], "the finalized session")
    if heard:  # the stream ends on its own after the final
        text = " ".join(d.text for d in finals(await events))
        assert wer(SENTENCES[0], text) <= 0.25, text
    else:  # nothing was sent back, so the client would wait for its 30 s finalization cap
        await stream.aclose()
        events.cancel()
        assert not record["finals"] and not record["interims"]


@pytest.mark.parametrize("max_silence, utterances", [(0.4, 2), (5.0, 1)])
async def test_max_silence_ends_the_utterance(gateway_http, speech, max_silence, utterances):
    """Two sentences 3 s apart: with 0.4 s of max silence the first one's final comes while the
    input goes on, with 5 s both are one utterance, final when the input ends."""
    client = inference_stt(gateway_http, extra_kwargs={"max_silence_duration_secs": max_silence})
    stream = client.stream(conn_options=NO_RETRY)
    events: list[stt.SpeechEvent] = []

    async def read():
        async for ev in stream:
            events.append(ev)

    reader = asyncio.create_task(read())
    push(stream, np.concatenate([speech[0], silence(3.0)]))
    if utterances == 2:
        for _ in range(600):  # the final is on its way to the client (minutes on a busy machine)
            if finals(events):
                break
            await asyncio.sleep(0.1)
        assert wer(SENTENCES[0], finals(events)[0].text) <= 0.25
    push(stream, np.concatenate([speech[1], silence(0.5)]))
    stream.end_input()
    await reader
    texts = [d.text for d in finals(events)]
    assert len(texts) == utterances, texts
    assert wer(" ".join(SENTENCES), " ".join(texts)) <= 0.25, texts


# -- Cartesia ------------------------------------------------------------------------------------


def cartesia_stt(http, **kwargs) -> cartesia.STT:
    kwargs = {"model": "ink-whisper", "language": "en", "api_key": CARTESIA_KEY, **kwargs}
    return cartesia.STT(base_url=BASE, http_session=http, **kwargs)


async def test_cartesia_plugin_transcribes(gateway_http, speech):
    first = len(await sessions(gateway_http))
    stream = cartesia_stt(gateway_http).stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    push(stream, np.concatenate([speech[0], silence(1.5), speech[1], silence(0.5)]))
    # the plugin drops its input if it ended before the websocket was open
    await wait_for(gateway_http, first, lambda s: s["audio_seconds"] > 0, "audio")
    stream.end_input()
    got = await events

    text = " ".join(d.text for d in finals(got))
    assert wer(" ".join(SENTENCES), text) <= 0.25, text
    record = (await sessions(gateway_http))[-1]
    assert record["route"] == "cartesia"
    assert (record["model"], record["language"]) == ("ink-whisper", "en")
    assert (record["sample_rate"], record["encoding"]) == (16000, "pcm_s16le")
    assert record["finalized"] and record["closed"]
    assert CARTESIA_KEY not in str(record)
    words = [w for d in finals(got) for w in d.words]
    assert words and all(w.end_time >= w.start_time for w in words)


async def test_cartesia_language_change_reconnects(gateway_http, speech):
    first = len(await sessions(gateway_http))
    client = cartesia_stt(gateway_http)
    stream = client.stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    push(stream, speech[0])
    await wait_for(gateway_http, first, lambda s: s["audio_seconds"] > 0, "audio")
    client.update_options(language="de")
    await wait_for(gateway_http, first, lambda s: s["language"] == "de", "the reconnect in German")
    push(stream, speech[1])
    await wait_for(
        gateway_http, first, lambda s: s["audio_seconds"] > 0, "audio after the reconnect"
    )
    stream.end_input()
    assert finals(await events)[-1].language == "de"


async def test_cartesia_wrong_key_is_refused(gateway_http, speech):
    async with gateway_http.get(
        f"{BASE}/stt/websocket?model=ink-whisper&encoding=pcm_s16le&sample_rate=16000",
        headers={"X-API-Key": "wrong", "Cartesia-Version": "2025-04-16"},
    ) as r:
        assert r.status == 401
        body = await r.json()
    assert body["error_code"] == "invalid_api_key" and body["title"] and body["request_id"]

    stream = cartesia_stt(gateway_http, api_key="wrong").stream(conn_options=NO_RETRY)
    push(stream, speech[0][:RATE])
    with pytest.raises(APIStatusError) as e:
        await collect(stream)
    assert e.value.status_code == 401


@pytest.mark.parametrize(
    "route, query, reason",
    [
        ("stt/websocket", "model=ink-3&language=en", "use ink-whisper or ink-2"),
        ("stt/turns/websocket", "model=ink-whisper", "ink-whisper is served on /stt/websocket"),
        ("stt/websocket", "model=ink-whisper&language=xx", "does not support language 'xx'"),
        ("stt/websocket", "model=ink-2&language=de", "does not support language 'de'"),
        ("stt/websocket", "model=ink-whisper&min_volume=1.5", "min_volume=1.5 is out of range"),
        ("stt/turns/websocket", "model=ink-2&turn_end_threshold=0.9", "out of range [0.05, 0.5]"),
    ],
)
async def test_cartesia_bad_parameters(gateway_http, route, query, reason):
    async with gateway_http.get(
        f"{BASE}/{route}?{query}&encoding=pcm_s16le&sample_rate=16000",
        headers={"X-API-Key": CARTESIA_KEY, "Cartesia-Version": "2025-04-16"},
    ) as r:
        assert r.status == 400
        assert reason in (await r.json())["message"]


async def test_cartesia_plugin_default_ink2_streams_turns(gateway_http, speech):
    """`cartesia.STT()` with no model picks ink-2 for English: the turns websocket, where the
    server ends each turn (turn.start, turn.update, turn.end)."""
    first = len(await sessions(gateway_http))
    client = cartesia.STT(
        language="en",
        api_key=CARTESIA_KEY,
        base_url=BASE,
        http_session=gateway_http,
        turn_end_threshold=0.3,
    )
    assert client.model == "ink-2"
    stream = client.stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    audio = np.concatenate([speech[0], silence(1.5), speech[1], silence(1.0)])
    await speak(stream, audio)
    await wait_for(
        gateway_http,
        first,
        lambda s: s["audio_seconds"] >= len(audio) / RATE - 0.2,
        "all the audio",
    )
    stream.end_input()
    got = await events

    texts = [d.text for d in finals(got)]
    assert len(texts) == 2, texts  # one turn per sentence, ended by the server
    assert wer(" ".join(SENTENCES), " ".join(texts)) <= 0.25, texts
    kinds = [e.type for e in got]
    assert kinds.count(stt.SpeechEventType.START_OF_SPEECH) == 2
    assert kinds.count(stt.SpeechEventType.END_OF_SPEECH) == 2
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    record = (await sessions(gateway_http))[-1]
    assert (record["model"], record["options"]) == ("ink-2", {"turn_end_threshold": 0.3})
    assert record["api_version"] == "2025-04-16" and record["finalized"]


async def test_inference_serves_ink2(gateway_http, speech):
    stream = inference_stt(
        gateway_http, model="cartesia/ink-2", extra_kwargs={"turn_end_timeout_ms": 1000}
    ).stream(conn_options=NO_RETRY)
    text = " ".join(d.text for d in await say_once(stream, speech[1]))
    assert wer(SENTENCES[1], text) <= 0.25, text
    record = (await sessions(gateway_http))[-1]
    assert (record["model"], record["language"]) == ("cartesia/ink-2", "en")


async def test_other_providers_and_languages_are_accepted(gateway_http, speech):
    """The gateway stands in for every Inference model: it checks the catalog, records the
    request, transcribes with the English model and answers in the language asked for."""
    client = inference_stt(
        gateway_http, model="deepgram/nova-3", language="es", extra_kwargs={"smart_format": True}
    )
    stream = client.stream(conn_options=NO_RETRY)
    got = await say_once(stream, speech[1])
    assert got and all(d.language == "es" for d in got)
    record = (await sessions(gateway_http))[-1]
    assert (record["model"], record["language"]) == ("deepgram/nova-3", "es")
    assert record["options"]["smart_format"] is True


async def test_audio_at_another_rate_is_resampled(gateway_http, speech):
    first = len(await sessions(gateway_http))
    stream = cartesia_stt(gateway_http, sample_rate=24000).stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    push(stream, np.concatenate([speech[1], silence(0.5)]))  # the stream resamples to 24 kHz
    await wait_for(gateway_http, first, lambda s: s["audio_seconds"] > 0, "audio")
    stream.end_input()
    text = " ".join(d.text for d in finals(await events))
    assert wer(SENTENCES[1], text) <= 0.25, text
    assert (await sessions(gateway_http))[-1]["sample_rate"] == 24000


async def test_messages_before_session_create_are_an_error(gateway_http):
    token = (
        api.AccessToken(KEY, SECRET)
        .with_inference_grants(api.access_token.InferenceGrants(perform=True))
        .to_jwt()
    )
    async with gateway_http.ws_connect(
        f"{BASE}/v1/stt", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send_json({"type": "input_audio", "audio": ""})
        reply = await ws.receive_json()
    assert reply["type"] == "error" and reply["code"] == 400
    assert "expected session.create first" in reply["message"]


async def test_command_line_serves_and_refuses_a_busy_port(gateway_http):
    cmd = [sys.executable, "-m", "agent", "gateway", "--port", str(CLI_PORT)]
    server = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    try:
        banner = (await server.stdout.readline()).decode()  # printed once it listens
        assert f"http://127.0.0.1:{CLI_PORT}" in banner
        async with gateway_http.get(f"http://127.0.0.1:{CLI_PORT}/") as r:
            assert r.status == 200
        busy = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE)
        _, stderr = await busy.communicate()
        assert busy.returncode == 2
        assert stderr.decode().startswith(f"error: cannot listen on 127.0.0.1:{CLI_PORT}")
        assert b"Traceback" not in stderr
    finally:
        server.terminate()
        await server.wait()


async def test_nothing_is_lost_at_utterance_boundaries(gateway_http):
    """44 s of real, multi-sentence speech (shipped in the moonshine-voice wheel), streamed with
    the default 0.5 s silence cut-off: the finals together score within 1 WER point of the
    engine transcribing the same audio in one piece. (Stopping the Moonshine stream at each
    cut used to drop the next utterance's first words: 'that some of its noisiest' was lost.)"""
    from agent.audio_files import load
    from agent.plugins.moonshine import load_transcriber

    samples = load(DICKENS).samples
    direct = await asyncio.to_thread(
        load_transcriber().transcribe_without_streaming, samples.tolist(), RATE
    )
    engine_wer = wer(DICKENS_SAID, " ".join(line.text.strip() for line in direct.lines))

    first = len(await sessions(gateway_http))
    stream = inference_stt(gateway_http).stream(conn_options=NO_RETRY)
    events = asyncio.create_task(collect(stream))
    audio = np.concatenate([samples, silence(1.0)])
    await speak(stream, audio)  # the finals come as it goes: the client waits 3 s for the next
    await wait_for(
        gateway_http,
        first,
        lambda s: s["audio_seconds"] >= len(audio) / RATE - 0.05,
        "all the audio",
    )
    stream.end_input()
    texts = [d.text for d in finals(await events)]
    record = (await sessions(gateway_http))[-1]
    gateway_wer = wer(DICKENS_SAID, " ".join(texts))
    assert len(record["finals"]) >= 2, record["finals"]  # the cut-off did split the speech
    assert gateway_wer <= engine_wer + 0.01, (gateway_wer, engine_wer, texts)
