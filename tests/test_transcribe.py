"""`python -m agent transcribe` and `bench-stt` on real synthesized speech, every container and raw
encoding, bad files, and the Cartesia batch request shape against a local server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from agent import audio_files, config
from agent.__main__ import main as agent_cli
from agent.audio import resample
from tests.speech import VOICE_RATE as TTS_RATE
from tests.speech import spoken
from tools import bench_stt, transcribe
from tools.wer import wer

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
CONTAINERS = {  # extension -> (muxer, codec, sample rate)
    "wav": ("wav", "pcm_s16le", 24000),
    "flac": ("flac", "flac", 24000),
    "mp3": ("mp3", "libmp3lame", 24000),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 24000),
}
RAW = {  # --encoding -> FFmpeg raw muxer and codec (pcm_f16le has no FFmpeg encoder: numpy)
    "pcm_s16le": ("s16le", "pcm_s16le"),
    "pcm_s32le": ("s32le", "pcm_s32le"),
    "pcm_f32le": ("f32le", "pcm_f32le"),
    "pcm_mulaw": ("mulaw", "pcm_mulaw"),
    "pcm_alaw": ("alaw", "pcm_alaw"),
    "pcm_f16le": None,
}
RAW_RATE = 8000  # telephone rate: also exercises resampling


def encode(samples: np.ndarray, path: Path, muxer: str, codec: str, rate: int) -> None:
    """Write 24 kHz float speech with FFmpeg's own encoders (the decoder must undo them)."""
    frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None, :], "flt", "mono")
    frame.sample_rate = TTS_RATE
    with av.open(str(path), "w", format=muxer) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return spoken(SENTENCE)


@pytest.fixture(scope="module")
def files(speech, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("audio")
    out = {}
    for ext, (muxer, codec, rate) in CONTAINERS.items():
        out[ext] = folder / f"speech.{ext}"
        encode(speech, out[ext], muxer, codec, rate)
    for encoding, spec in RAW.items():
        out[encoding] = folder / f"speech.{encoding}.raw"
        if spec:
            encode(speech, out[encoding], *spec, RAW_RATE)
        else:
            at_8k = resample(speech, TTS_RATE)[::2]  # 16 kHz -> 8 kHz (speech band)
            out[encoding].write_bytes(at_8k.astype("<f2").tobytes())
    return out


def run_cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def cli_json(capsys, *argv: str) -> list[dict]:
    transcribe.main(list(argv))
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_every_container_transcribes(files, capsys):
    paths = [str(files[ext]) for ext in CONTAINERS]
    results = cli_json(capsys, *paths)  # several files: JSON lines tagged with the file
    assert [r["file"] for r in results] == paths
    for r in results:
        assert r["type"] == "transcript" and r["language"] == "en"
        assert abs(r["duration"] - 5.3) < 0.3, r
        assert wer(SENTENCE, r["text"]) <= 0.1, r


@pytest.mark.parametrize("encoding", list(RAW))
def test_raw_encodings(files, capsys, encoding):
    argv = ["--encoding", encoding, "--sample-rate", str(RAW_RATE), str(files[encoding])]
    (result,) = cli_json(capsys, *argv)
    assert wer(SENTENCE, result["text"]) <= 0.2, result
    assert abs(result["duration"] - 5.3) < 0.3


def test_word_timestamps_are_monotonic_and_inside_the_audio(files, capsys):
    argv = ["--stt", "local/whisper-tiny:en", "--timestamps", "word", str(files["flac"])]
    (result,) = cli_json(capsys, *argv)
    words = result["words"]
    assert len(words) == len(SENTENCE.split())
    assert " ".join(w["word"] for w in words) == result["text"]
    for w in words:
        assert 0 <= w["start"] <= w["end"] <= result["duration"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))


def test_srt_and_text_formats(files, capsys):
    transcribe.main(["--stt", "local/whisper-tiny", "--format", "srt", str(files["wav"])])
    srt = capsys.readouterr().out
    assert srt.startswith("1\n00:00:00,") and "-->" in srt and "\n2\n" in srt
    transcribe.main(["--format", "text", str(files["wav"])])
    assert wer(SENTENCE, capsys.readouterr().out) <= 0.1


def transcribe_long(speech, words: bool):
    """`speech` seven times over (~41 s), cut into its two windows and transcribed as the tool
    does: (the file, its windows, the transcript, the progress reported)."""
    long = np.concatenate([speech, np.zeros(TTS_RATE // 2, np.float32)] * 7)
    samples = resample(long, TTS_RATE)
    windows = audio_files.windows(samples)
    assert len(windows) == 2 and sum(len(w) for _, w in windows) == len(samples)
    audio = audio_files.Audio(Path("long.wav"), samples, TTS_RATE, "wav")
    engine = transcribe.make_engine(config.parse("stt", "local/moonshine-tiny"), config.Settings())
    done = []
    return audio, windows, engine.transcribe(audio, "en", words, done.append), done


def test_long_audio_is_windowed_and_every_window_transcribed(speech, fake_local_stt):
    """The windows' logic on a fake engine: every sample in a window, each window's words at its
    place in the file, progress for all of it. Real speech across a window's cut:
    test_transcribe_long.py (slow tier)."""
    audio, windows, result, done = transcribe_long(speech, words=True)
    assert fake_local_stt.windows == [len(w) for _, w in windows]
    assert result.text == " ".join([fake_local_stt.text] * 2)
    assert sum(done) == pytest.approx(audio.duration)
    second = windows[1][0]  # seconds: where the second window starts
    assert [s.start for s in result.segments] == pytest.approx([0.0, second])
    assert result.words[3].start == pytest.approx(second)  # its first word, shifted there
    assert result.words[-1].end == pytest.approx(audio.duration)


@pytest.fixture(scope="module")
def bad_files(files, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    wav = files["wav"].read_bytes()
    made = {
        "empty.wav": b"",
        "truncated.wav": wav[: len(wav) // 2],
        "truncated.mp3": files["mp3"].read_bytes()[: files["mp3"].stat().st_size // 3],
        "notes.wav": b"these are meeting notes, not audio\n" * 40,
        "odd.raw": b"\x01\x02\x03",
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made} | {"good.wav": files["wav"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["empty.wav"], "is empty"),
        (["truncated.wav"], "truncated"),
        (["truncated.mp3"], "truncated"),
        (["notes.wav"], "not an audio file"),
        (["missing.wav"], "no such file"),
        (["--encoding", "pcm_s16le", "--sample-rate", "16000", "good.wav"], "drop --encoding"),
        (["--encoding", "pcm_s16le", "--sample-rate", "16000", "odd.raw"], "is --encoding right"),
        (["--encoding", "pcm_s16le", "odd.raw"], "needs --sample-rate"),
        (["--sample-rate", "16000", "good.wav"], "raw PCM only"),
        (["--stt", "local/moonshine-tiny", "--timestamps", "word", "good.wav"], "whisper-tiny"),
        (["--stt", "deepgram/nova-3", "good.wav"], "streams only"),
        (["--stt", "local/whisper-tiny", "--language", "fr", "good.wav"], "language 'fr'"),
        (["--stt", "cartesia/ink-whisper", "good.wav"], "set CARTESIA_API_KEY"),
    ],
)
def test_bad_input_is_one_clear_line(bad_files, args, message, capsys, monkeypatch):
    # `python -m agent transcribe`'s own entry point, in this process (a process per case cost
    # ~2 s of imports); test_float_data_under_the_wrong_encoding runs it as a real process
    monkeypatch.setenv("CARTESIA_API_KEY", "")
    args = [str(bad_files.get(a, a)) if a.endswith((".wav", ".raw", ".mp3")) else a for a in args]
    with pytest.raises(SystemExit) as exited:
        agent_cli(["transcribe", *args])
    out, err = capsys.readouterr()
    assert exited.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert out == ""


def test_float_data_under_the_wrong_encoding(files):
    # 32-bit integers read as floats are mostly denormals and huge values: refused, with exit
    # status 2 from a real `python -m agent` process
    done = run_cli(
        "transcribe", "--encoding", "pcm_f32le", "--sample-rate", "8000", str(files["pcm_s32le"])
    )
    assert done.returncode == 2 and "does not look like pcm_f32le" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# -- the batch API, against a local server that speaks Cartesia's batch wire format -------------


class FakeCartesia:
    """POST /stt and /audio/transcriptions as Cartesia documents them; records each request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        record = {
            "path": request.path,
            "headers": dict(request.headers),
            "query": dict(request.query),
            "fields": {k: v for k, v in form.items() if k != "file"},
            "filename": upload.filename,
            "bytes": upload.file.read(),
        }
        self.requests.append(record)
        key = request.headers.get("X-API-Key") or request.headers.get("Authorization", "")[7:]
        if key != "sk-test":
            return web.json_response({"message": "Invalid API key"}, status=401)
        body = {
            "type": "transcript",
            "request_id": "req-1",
            "text": "Hallo Welt.",
            "language": form["language"],
            "duration": 1.25,
        }
        if form.getall("timestamp_granularities[]", []) == ["word"]:
            body["words"] = [
                {"word": "Hallo", "start": 0.1, "end": 0.5},
                {"word": "Welt.", "start": 0.6, "end": 1.1},
            ]
        return web.json_response(body)


@pytest_asyncio.fixture(loop_scope="function")  # the tests' loop must serve it
async def cartesia():
    fake = FakeCartesia()
    app = web.Application()
    app.router.add_post("/stt", fake.handle)
    app.router.add_post("/audio/transcriptions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def cli(capsys, monkeypatch):
    """`python -m agent transcribe ARGS` in this process, on a thread (the fake server it calls
    runs on the test's loop): (exit status, stdout, stderr)."""

    async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            await asyncio.to_thread(agent_cli, ["transcribe", *args])
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def test_cartesia_batch_request_shape(cartesia, files, cli):
    env = {"CARTESIA_API_KEY": "sk-test", "CARTESIA_BASE_URL": cartesia.url}
    args = ["--stt", "cartesia/ink-whisper:de", "--timestamps", "word", str(files["mp3"])]
    code, out, err = await cli(*args, env=env)
    assert code == 0, err
    (req,) = cartesia.requests
    assert req["path"] == "/stt"
    assert req["headers"]["X-API-Key"] == "sk-test"
    assert req["headers"]["Cartesia-Version"] == transcribe.CARTESIA_VERSION
    assert req["headers"]["Content-Type"].startswith("multipart/form-data")
    assert req["fields"] == {
        "model": "ink-whisper",
        "language": "de",
        "timestamp_granularities[]": "word",
    }
    assert req["filename"] == "speech.mp3" and req["bytes"] == files["mp3"].read_bytes()
    assert req["query"] == {}  # containers are decoded by the server
    assert json.loads(out) == {
        "type": "transcript",
        "text": "Hallo Welt.",
        "language": "de",
        "duration": 1.25,
        "words": [
            {"word": "Hallo", "start": 0.1, "end": 0.5},
            {"word": "Welt.", "start": 0.6, "end": 1.1},
        ],
    }
    assert "sk-test" not in out + err


async def test_raw_pcm_upload_names_its_format_and_openai_style(cartesia, files, cli):
    env = {"CARTESIA_API_KEY": "sk-test"}
    args = ["--stt", "cartesia/ink", "--api", "openai", "--base-url", cartesia.url]
    raw = ["--encoding", "pcm_mulaw", "--sample-rate", str(RAW_RATE), str(files["pcm_mulaw"])]
    code, out, err = await cli(*args, "--format", "text", *raw, env=env)
    assert code == 0, err
    (req,) = cartesia.requests
    assert req["path"] == "/audio/transcriptions"
    assert req["headers"]["Authorization"] == "Bearer sk-test"
    assert req["query"] == {"encoding": "pcm_mulaw", "sample_rate": str(RAW_RATE)}
    assert req["fields"] == {"model": "ink-whisper", "language": "en"}
    assert out.strip() == "Hallo Welt."


async def test_rejected_key_is_one_line(cartesia, files, cli):
    env = {"CARTESIA_API_KEY": "sk-wrong", "CARTESIA_BASE_URL": cartesia.url}
    code, out, err = await cli("--stt", "cartesia/ink-whisper", str(files["wav"]), env=env)  # fmt: skip
    assert code == 2 and out == ""
    assert (
        err.strip()
        == f"error: {cartesia.url}/stt answered HTTP 401: Invalid API key; check the API key"
    )


async def test_unreachable_provider_is_one_line(files, cli):
    env = {"CARTESIA_API_KEY": "sk-test", "CARTESIA_BASE_URL": "http://127.0.0.1:9"}
    code, _, err = await cli("--stt", "cartesia/ink-whisper", str(files["wav"]), env=env)  # fmt: skip
    assert code == 2 and err.startswith("error: cannot reach http://127.0.0.1:9/stt")
    assert len(err.strip().splitlines()) == 1


# -- bench-stt ---------------------------------------------------------------------------------


def test_bench_stt_table_json_and_plot(files, tmp_path, capsys, monkeypatch, fake_file_stt):
    """What bench-stt makes of its engines' transcripts (the engines hear real speech in the
    tests above): one engine hears every word, the other misses one word in each file."""
    monkeypatch.setattr(bench_stt, "make_engine", fake_file_stt.make_engine)
    missed = SENTENCE.replace("lazy ", "")
    fake_file_stt.heard = {"local/moonshine-tiny:en": SENTENCE, "local/whisper-tiny:en": missed}
    refs = tmp_path / "refs.tsv"
    refs.write_text(
        f"# file\treference\n{files['wav']}\t{SENTENCE}\n{files['ogg'].name}\t{SENTENCE}\n"
    )
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    bench_stt.main(
        ["--refs", str(refs), "--json", str(out_json), "--plot", str(out_png),
         str(files["wav"]), str(files["ogg"])]
    )  # fmt: skip
    table = capsys.readouterr().out
    assert "local/moonshine-tiny:en" in table and "local/whisper-tiny:en" in table
    # the defaults, each given every file (the .ogg found by its name alone) in its language
    assert fake_file_stt.asked == [
        (stt, str(f), "en")
        for stt in ("local/moonshine-tiny:en", "local/whisper-tiny:en")
        for f in (files["wav"], files["ogg"])
    ]
    results = json.loads(out_json.read_text())
    assert [r["stt"] for r in results] == ["local/moonshine-tiny:en", "local/whisper-tiny:en"]
    words = len(SENTENCE.split())
    assert [r["wer"] for r in results] == [0.0, round(2 / (2 * words), 4)]  # over both files
    for r in results:
        assert r["seconds_per_audio_second"] >= 0 and len(r["files"]) == 2
        assert r["audio_seconds"] == pytest.approx(2 * 5.3, abs=0.6)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_stt_needs_a_reference_for_every_file(files, tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text(f"other.wav\t{SENTENCE}\n")
    with pytest.raises(config.ConfigError, match="no reference"):
        bench_stt.main(["--refs", str(refs), str(files["wav"])])
