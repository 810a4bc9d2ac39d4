"""The gateway as a drop-in Cartesia: the official `cartesia` SDK (2.x, pinned in the dev group)
and the `openai` SDK, with their default settings, pointed at a gateway subprocess.

The audio is real speech shipped in the moonshine-voice wheel (Samuel Beckett, 10 s; Dickens,
44 s), sent as the files a user has: WAV, and every container Cartesia's batch reference lists.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import wave
from pathlib import Path

import aiohttp
import pytest
from cartesia import Cartesia
from cartesia.core.api_error import ApiError
from openai import APIStatusError as OpenAIStatusError
from openai import OpenAI

from services.gateway.auth import API_VERSIONS
from tests.speech import BECKETT, BECKETT_SAID, DICKENS, DICKENS_SAID
from tools.wer import wer

pytestmark = pytest.mark.slow

KEY = "local-dev-key"  # what tools/stack.Gateway starts the gateway with


@pytest.fixture(scope="module")
def base(gateway) -> str:
    # SDK 2.x switches its websockets to ws:// only for a base URL containing "localhost"
    return gateway.base.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def client(base) -> Cartesia:
    return Cartesia(api_key=KEY, base_url=base)


def openai_client(base: str, key: str = KEY, version: str = "2025-04-16") -> OpenAI:
    """As Cartesia's migration guide writes it (seed 004)."""
    return OpenAI(api_key=key, base_url=base, default_headers={"Cartesia-Version": version})


def sessions(base: str) -> list[dict]:
    request = urllib.request.Request(f"{base}/sessions", headers={"X-API-Key": KEY})
    return json.loads(urllib.request.urlopen(request).read())


def test_status_is_what_the_sdk_validates(client):
    status = client.api_status.get()
    assert status.ok is True
    assert status.version == API_VERSIONS[-1]


def test_batch_transcribes_a_file_with_word_timestamps(client):
    with BECKETT.open("rb") as f:
        result = client.stt.transcribe(
            file=f, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
    assert wer(BECKETT_SAID, result.text) <= 0.2, result.text
    assert result.language == "en"
    assert result.duration == pytest.approx(9.96, abs=0.05)
    words = result.words or []
    assert len(words) >= 10, words
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert 0 <= words[0].start < 1.0 and 8.0 < words[-1].end <= 10.0
    assert (result.model_extra or {}).get("request_id")


def test_batch_without_timestamps_has_no_words(client):
    with BECKETT.open("rb") as f:
        result = client.stt.transcribe(file=f, model="ink-whisper", language="en")
    assert wer(BECKETT_SAID, result.text) <= 0.25, result.text
    assert result.words is None


@pytest.mark.parametrize(
    "encoding, rate",
    [("pcm_s16le", 16000), ("pcm_f32le", 24000), ("pcm_mulaw", 8000), ("pcm_alaw", 8000)],
)
def test_batch_raw_pcm_with_encoding_and_rate(client, tmp_path, encoding, rate):
    fmt = {"pcm_s16le": "s16le", "pcm_f32le": "f32le", "pcm_mulaw": "mulaw", "pcm_alaw": "alaw"}
    raw = tmp_path / "speech.raw"
    ffmpeg("-i", BECKETT, "-f", fmt[encoding], "-ar", str(rate), "-ac", "1", raw)
    with raw.open("rb") as f:
        result = client.stt.transcribe(
            file=f, model="ink-whisper", language="en", encoding=encoding, sample_rate=rate
        )
    assert wer(BECKETT_SAID, result.text) <= 0.35, (encoding, result.text)
    assert result.duration == pytest.approx(9.96, abs=0.1)


# every container Cartesia's batch reference lists (seed 001), as ffmpeg writes it
CONTAINERS = {
    "flac": ["-c:a", "flac"],
    "m4a": ["-c:a", "aac"],
    "mp3": ["-c:a", "libmp3lame"],
    "mp4": ["-c:a", "aac", "-f", "mp4"],
    "mpeg": ["-c:a", "mp2", "-f", "mpeg"],
    "mpga": ["-c:a", "libmp3lame", "-f", "mp3"],
    "oga": ["-c:a", "libvorbis", "-f", "ogg"],
    "ogg": ["-c:a", "libopus"],
    "wav": ["-c:a", "pcm_s16le"],
    "webm": ["-c:a", "libopus"],
}


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_batch_decodes_every_listed_container(client, tmp_path, ext):
    path = tmp_path / f"speech.{ext}"
    ffmpeg("-i", BECKETT, "-ac", "1", "-ar", "16000", *CONTAINERS[ext], path)
    with path.open("rb") as f:
        result = client.stt.transcribe(file=(path.name, f), model="ink-whisper", language="en")
    assert wer(BECKETT_SAID, result.text) <= 0.35, (ext, result.text)


def test_long_file_is_chunked_and_whole(client):
    """44 s is more than one engine window (30 s): the windows' texts come back in order."""
    with DICKENS.open("rb") as f:
        result = client.stt.transcribe(
            file=f, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
    assert wer(DICKENS_SAID, result.text) <= 0.15, result.text
    assert result.duration == pytest.approx(44.37, abs=0.05)
    assert result.words and result.words[-1].end > 40.0


def test_silence_after_speech_adds_no_invented_words(client, tmp_path):
    """Whisper says "you" on silence (75 times in a 30-min silent WAV, issue 33): a minute of
    silence after speech adds no word, its windows go to no model."""
    path = tmp_path / "speech-then-silence.wav"
    ffmpeg("-i", BECKETT, "-af", "apad=pad_dur=60", "-ac", "1", "-ar", "16000", path)
    with path.open("rb") as f:
        result = client.stt.transcribe(file=f, model="ink-whisper", language="en")
    with BECKETT.open("rb") as f:
        alone = client.stt.transcribe(file=f, model="ink-whisper", language="en")
    assert result.duration > 60

    def words(text: str) -> list[str]:
        return re.findall(r"[a-z']+", text.lower())

    assert words(result.text) == words(alone.text)  # without it: "... Fail better. you you"


def test_batch_errors_have_cartesia_shape(client, tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio")
    with pytest.raises(ApiError) as e, bogus.open("rb") as f:
        client.stt.transcribe(file=f, model="ink-whisper", language="en")
    assert e.value.status_code == 400
    body = e.value.body
    assert body["error_code"] == "invalid_audio" and body["title"] and body["request_id"]
    assert "notes.wav" in body["message"] and "/tmp" not in body["message"]

    for model, reason in (("ink-2", "ink-2 streams only"), ("whisper-1", "use ink-whisper")):
        with pytest.raises(ApiError) as e, BECKETT.open("rb") as f:
            client.stt.transcribe(file=f, model=model, language="en")
        assert e.value.status_code == 400 and reason in e.value.body["message"]
    with pytest.raises(ApiError) as e, BECKETT.open("rb") as f:
        client.stt.transcribe(file=f, model="ink-whisper", language="xx")
    assert "does not support language 'xx'" in e.value.body["message"]


def test_wrong_key_is_refused(base):
    with pytest.raises(ApiError) as e, BECKETT.open("rb") as f:
        Cartesia(api_key="wrong", base_url=base).stt.transcribe(file=f, model="ink-whisper")
    assert e.value.status_code == 401
    assert e.value.body["error_code"] == "invalid_api_key"
    assert KEY not in json.dumps(e.value.body)


# -- the OpenAI SDK, as Cartesia's migration guide configures it ---------------------------------


def test_openai_sdk_transcriptions(base):
    with BECKETT.open("rb") as f:
        result = openai_client(base).audio.transcriptions.create(
            file=f, model="ink-whisper", language="en", timestamp_granularities=["word"]
        )
    assert wer(BECKETT_SAID, result.text) <= 0.2, result.text
    extra = result.model_extra or {}
    assert extra["type"] == "transcript" and extra["language"] == "en"
    assert extra["words"] and {"word", "start", "end"} <= set(extra["words"][0])


def test_openai_sdk_without_version_is_told_what_to_send(base):
    client = OpenAI(api_key=KEY, base_url=base)
    with pytest.raises(OpenAIStatusError) as e, BECKETT.open("rb") as f:
        client.audio.transcriptions.create(file=f, model="ink-whisper")
    assert e.value.status_code == 400
    assert "Cartesia-Version" in e.value.response.json()["message"]


# -- access tokens -------------------------------------------------------------------------------


def test_access_token_flow(client, base):
    token = client.auth.access_token(grants={"stt": True}, expires_in=60).token
    assert KEY not in token
    # a token is a Bearer credential (the OpenAI SDK sends its api_key that way)
    with BECKETT.open("rb") as f:
        result = openai_client(base, key=token).audio.transcriptions.create(
            file=f, model="ink-whisper"
        )
    assert wer(BECKETT_SAID, result.text) <= 0.25
    # a token cannot make more tokens
    with pytest.raises(ApiError) as e:
        Cartesia(api_key=token, base_url=base).auth.access_token(grants={"stt": True})
    assert e.value.status_code == 403


def test_token_without_the_stt_grant_is_forbidden(client, base):
    token = client.auth.access_token(grants={"tts": True}, expires_in=60).token
    with pytest.raises(OpenAIStatusError) as e, BECKETT.open("rb") as f:
        openai_client(base, key=token).audio.transcriptions.create(file=f, model="ink-whisper")
    assert e.value.status_code == 403
    assert "lacks the 'stt' grant" in e.value.response.json()["message"]


def test_expired_token_is_refused(client, base):
    token = client.auth.access_token(grants={"stt": True}, expires_in=1).token
    time.sleep(2.1)
    with pytest.raises(OpenAIStatusError) as e, BECKETT.open("rb") as f:
        openai_client(base, key=token).audio.transcriptions.create(file=f, model="ink-whisper")
    assert e.value.status_code == 401
    assert e.value.response.json()["error_code"] == "token_expired"


@pytest.mark.parametrize(
    "grants, expires_in, reason",
    [
        ({"stt": True}, 3601, "out of range [1, 3600]"),
        ({"stt": True}, 0, "out of range [1, 3600]"),
        ({"tts": False}, 60, "grant at least one"),
    ],
)
def test_access_token_limits(client, grants, expires_in, reason):
    with pytest.raises(ApiError) as e:
        client.auth.access_token(grants=grants, expires_in=expires_in)
    assert e.value.status_code == 400 and reason in e.value.body["message"]


async def test_browser_style_websocket_with_access_token(client, base):
    """A browser cannot set headers: token and version ride in the query string."""
    token = client.auth.access_token(grants={"stt": True}, expires_in=60).token
    ws_base = base.replace("http", "ws")
    query = "model=ink-whisper&language=en&encoding=pcm_s16le&sample_rate=16000"
    async with aiohttp.ClientSession() as http:
        url = f"{ws_base}/stt/websocket?{query}&access_token={token}&cartesia_version=2026-03-01"
        async with http.ws_connect(url) as ws:
            await ws.send_bytes(pcm(BECKETT))
            await ws.send_str("close")
            finals = []
            async for msg in ws:
                event = json.loads(msg.data)
                if event["type"] == "transcript" and event["is_final"]:
                    finals.append(event["text"])
                if event["type"] == "done":
                    break
        assert wer(BECKETT_SAID, " ".join(finals)) <= 0.25, finals
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(f"{ws_base}/stt/websocket?{query}&access_token={token}")
        assert e.value.status == 400  # no cartesia_version


# -- streaming with the SDK's defaults -----------------------------------------------------------


def test_sdk_websocket_streams_with_its_default_auth(client, base):
    """SDK 2.x puts api_key and cartesia_version (2024-11-13) in the websocket's query."""
    audio = pcm(BECKETT)
    chunks = (audio[i : i + 3200] for i in range(0, len(audio), 3200))  # 100 ms each
    events = list(client.stt.websocket().transcribe(chunks))  # ink-whisper, en, 16 kHz s16le
    finals = [e for e in events if e["type"] == "transcript" and e["is_final"]]
    assert wer(BECKETT_SAID, " ".join(e["text"] for e in finals)) <= 0.25, finals
    assert [e["type"] for e in events][-2:] == ["flush_done", "done"]
    assert all(e["language"] == "en" and e["words"] for e in finals)
    record = sessions(base)[-1]
    assert (record["model"], record["api_version"], record["subject"]) == (
        "ink-whisper",
        "2024-11-13",
        "api_key",
    )


def test_sdk_websocket_ink2(client, base):
    audio = pcm(BECKETT)
    chunks = (audio[i : i + 3200] for i in range(0, len(audio), 3200))
    events = list(client.stt.websocket(model="ink-2").transcribe(chunks, model="ink-2"))
    finals = [e["text"] for e in events if e["type"] == "transcript" and e["is_final"]]
    assert wer(BECKETT_SAID, " ".join(finals)) <= 0.25, finals
    assert sessions(base)[-1]["model"] == "ink-2"


# -- Cartesia-Version ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version, status",
    [
        *((v, 200) for v in ("2024-11-13", "2025-04-16", "2026-03-01", "2026-08-14")),
        ("2025-09-30", 200),  # a date between versions: served as 2025-04-16
        ("2024-01-01", 400),  # before the first version
        ("2026-12-01", 400),  # after the newest: an unknown future version
        ("9999-99-99", 400),  # not a date
        ("2025-02-30", 400),
        ("latest", 400),
        (None, 400),
    ],
)
def test_cartesia_version_rule(base, version, status):
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    if version:
        headers["Cartesia-Version"] = version
    body = json.dumps({"grants": {"stt": True}}).encode()
    request = urllib.request.Request(f"{base}/access-token", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request) as r:
            got, answer = r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        got, answer = e.code, json.loads(e.read())
    assert got == status, answer
    if status == 400:
        assert answer["error_code"] in ("missing_version", "invalid_version")
        assert "2026-08-14" in answer["message"]


# -- helpers -------------------------------------------------------------------------------------


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=60)


def pcm(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


# -- the project's own transcribe tool -----------------------------------------------------------


@pytest.mark.parametrize("api", ["cartesia", "openai"])
def test_transcribe_tool_round_trips_through_the_gateway(gateway, api):
    """`python -m agent transcribe F --stt cartesia/ink-whisper:<lang>`, offline: the tool's
    batch client (X-API-Key or Bearer, Cartesia-Version) against the gateway."""
    env = {"CARTESIA_API_KEY": KEY, "CARTESIA_BASE_URL": gateway.base}
    args = ["--stt", "cartesia/ink-whisper:de", "--timestamps", "word", "--api", api, BECKETT]
    done = run_agent("transcribe", *args, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["language"] == "de"  # labelled as asked (the local engines speak English)
    assert wer(BECKETT_SAID, result["text"]) <= 0.2, result["text"]
    assert len(result["words"]) >= 10 and result["duration"] == pytest.approx(9.96, abs=0.05)
    assert KEY not in done.stdout + done.stderr


def test_transcribe_word_timestamps_on_the_defaults_picks_an_engine_that_has_them():
    done = run_agent("transcribe", BECKETT, "--timestamps", "word", "--format", "json", env={})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        "transcribe: local/moonshine-tiny:en has no word timestamps; using local/whisper-tiny:en, "
        "Whisper tiny.en via faster-whisper (offline, word timestamps)"
    )
    words = json.loads(done.stdout)["words"]
    assert len(words) >= 10 and all(w["end"] >= w["start"] for w in words)


def run_agent(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    import os
    import sys

    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("STT", "CARTESIA", "LIVEKIT"))
    }
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
