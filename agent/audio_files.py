"""Audio files in, 16 kHz mono float32 out, and a whole file through a local engine: what
`python -m agent transcribe` and the gateway's batch routes share.

Containers (wav, flac, mp3, ogg, webm, m4a, ...) are decoded with PyAV (FFmpeg). Raw PCM has
no header, so the caller names its encoding and sample rate, the same six encodings Cartesia's
batch API accepts. A file that is not what it claims to be fails here, with one line, before
any model or network is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from . import config
from .audio import ENGINE_RATE as SAMPLE_RATE
from .audio import RAW_ENCODINGS, SPEECH_RMS, resample
from .config import Descriptor
from .errors import AudioFileError
from .plugins import Segment, Word

Progress = Callable[[float], None]  # called with seconds of audio just finished

WINDOW_SECONDS = 30.0  # long files go to the local engines in windows of at most this


# leading bytes of containers: a file with these is not raw PCM, whatever --encoding says
MAGIC = {
    b"RIFF": "WAV",
    b"fLaC": "FLAC",
    b"OggS": "Ogg",
    b"ID3": "MP3",
    b"\x1aE\xdf\xa3": "WebM/Matroska",
}


class TooLongError(AudioFileError):
    """The file holds more audio than the caller accepts (found before decoding all of it)."""


@dataclass
class Audio:
    path: Path
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    source_rate: int
    format: str  # container name, or the raw encoding

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load(
    path: str | Path,
    encoding: str | None = None,
    sample_rate: int | None = None,
    max_seconds: float | None = None,
) -> Audio:
    """Decode a file to 16 kHz mono, or raise AudioFileError saying what is wrong with it.
    `max_seconds`: TooLongError as soon as the header, or the decoding so far, says the file is
    longer: a small file of hours of silence is refused without decoding hours."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path} is empty")
    check_raw_args(encoding, sample_rate)
    if encoding:
        return _load_raw(path, encoding, sample_rate, max_seconds)
    return _load_container(path, max_seconds)


def _too_long(path: Path, seconds: float, max_seconds: float | None, at_least: str = "") -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise TooLongError(
            f"{path} holds {at_least}{seconds:.0f} s of audio, over the limit of {max_seconds:.0f} s"
        )


def check_raw_args(encoding: str | None, sample_rate: int | None) -> None:
    if encoding and encoding not in RAW_ENCODINGS:
        raise AudioFileError(
            f"--encoding {encoding!r} is not one of: {', '.join(RAW_ENCODINGS)} "
            "(omit it for files with a header: wav, flac, mp3, ogg, webm, m4a)"
        )
    if encoding and not sample_rate:
        raise AudioFileError(f"--encoding {encoding} needs --sample-rate (raw PCM has no header)")
    if sample_rate and not encoding:
        raise AudioFileError("--sample-rate applies to raw PCM only: add --encoding, or drop it")
    if sample_rate and not 1000 <= sample_rate <= 384000:
        raise AudioFileError(f"--sample-rate {sample_rate} is not an audio sample rate in Hz")


def _load_raw(path: Path, encoding: str, sample_rate: int, max_seconds: float | None) -> Audio:
    width = RAW_ENCODINGS[encoding][0]
    _too_long(path, path.stat().st_size / width / sample_rate, max_seconds)
    raw = path.read_bytes()
    for magic, name in MAGIC.items():
        if raw.startswith(magic):
            raise AudioFileError(
                f"{path} is a {name} file, not raw {encoding}: drop --encoding and --sample-rate"
            )
    width, decode = RAW_ENCODINGS[encoding]
    if len(raw) % width:
        raise AudioFileError(
            f"{path}: {len(raw)} bytes is not a whole number of {encoding} samples "
            f"({width} bytes each); is --encoding right?"
        )
    samples = decode(raw)
    if encoding.startswith("pcm_f") and (
        not np.isfinite(samples).all() or np.abs(samples).max() > 4.0
    ):
        raise AudioFileError(
            f"{path} does not look like {encoding} (values far outside [-1, 1]); "
            "is --encoding right?"
        )
    return Audio(path, resample(samples, sample_rate), sample_rate, encoding)


def _load_container(path: Path, max_seconds: float | None = None) -> Audio:
    _check_riff_size(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise AudioFileError(
            f"{path} is not an audio file FFmpeg can read ({_reason(e)})"
        ) from None
    with container:
        if not container.streams.audio:
            raise AudioFileError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        declared = container.duration / av.time_base if container.duration else 0.0
        _too_long(path, declared, max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        decoded = 0  # samples: a header may lie about the duration, or not say it
        try:
            for frame in container.decode(stream):
                for f in resampler.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
                    decoded += len(chunks[-1])
                _too_long(path, decoded / SAMPLE_RATE, max_seconds, at_least="at least ")
        except av.error.FFmpegError as e:
            done = sum(len(c) for c in chunks) / SAMPLE_RATE
            raise AudioFileError(
                f"{path} is damaged or truncated: decoding stops at {done:.1f} s ({_reason(e)})"
            ) from None
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        audio = Audio(path, samples, stream.rate or SAMPLE_RATE, container.format.name)
    if not len(samples):
        raise AudioFileError(f"{path} holds no audio samples (truncated or empty stream)")
    # A cut-off file often decodes without an error, just shorter than its header says.
    if declared and audio.duration < 0.9 * declared - 0.5:
        raise AudioFileError(
            f"{path} is truncated: its header says {declared:.1f} s, "
            f"only {audio.duration:.1f} s decodes"
        )
    return audio


def _check_riff_size(path: Path) -> None:
    """FFmpeg sizes a WAV by its file, so a cut-off WAV decodes without complaint: compare the
    size its RIFF header declares (streamed WAVs write 0 or 0xFFFFFFFF there, and are skipped)."""
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != b"RIFF" or len(head) < 8:
        return
    declared = int.from_bytes(head[4:8], "little") + 8
    actual = path.stat().st_size
    if 8 < declared < 0xFFFFFFFF and actual < declared:
        raise AudioFileError(
            f"{path} is truncated: its WAV header declares {declared} bytes, the file has {actual}"
        )


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).split(":")[0]


def windows(samples: np.ndarray, seconds: float = WINDOW_SECONDS) -> list[tuple[float, np.ndarray]]:
    """Split audio into (offset in seconds, samples) windows of at most `seconds`.

    Each cut goes at the quietest 50 ms of the window's last fifth, so a word is rarely split.
    """
    size, hop = int(seconds * SAMPLE_RATE), SAMPLE_RATE // 20
    out, start = [], 0
    while len(samples) - start > size:
        tail = samples[start + size - size // 5 : start + size]
        energy = np.square(tail[: len(tail) // hop * hop]).reshape(-1, hop).sum(axis=1)
        cut = start + size - size // 5 + int(np.argmin(energy)) * hop + hop // 2
        out.append((start / SAMPLE_RATE, samples[start:cut]))
        start = cut
    out.append((start / SAMPLE_RATE, samples[start:]))
    return out


def has_speech(samples: np.ndarray) -> bool:
    """Whether any 50 ms of the audio is loud enough to be speech (SPEECH_RMS, the threshold
    the streaming engines gate on): a silent window is never handed to a model."""
    hop = SAMPLE_RATE // 20
    frames = np.pad(samples, (0, -len(samples) % hop)).reshape(-1, hop)
    return bool((np.sqrt(np.mean(np.square(frames), axis=1)) >= SPEECH_RMS).any())


@dataclass
class FileTranscript:
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    def to_json(self, words: bool) -> dict:
        """Cartesia's batch response shape (`words` only when word timestamps were asked)."""
        out = {
            "type": "transcript",
            "text": self.text,
            "language": self.language,
            "duration": round(self.duration, 3),
        }
        if words:
            out["words"] = [
                {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
                for w in self.words
            ]
        return out


class LocalEngine:
    """Any local STT plugin that offers `transcribe_samples` (agent/plugins/__init__.py)."""

    def __init__(self, desc: Descriptor) -> None:
        self._stt = config.build(desc)
        self._stt.prewarm()

    def transcribe(self, audio: Audio, language: str, words: bool, progress: Progress):
        segments: list[Segment] = []
        for offset, chunk in windows(audio.samples):
            if not has_speech(chunk):  # Whisper invents words ("you") on silence
                progress(len(chunk) / SAMPLE_RATE)
                continue
            for seg in self._stt.transcribe_samples(chunk, word_timestamps=words):
                shifted = [Word(w.word, offset + w.start, offset + w.end) for w in seg.words]
                segments.append(Segment(offset + seg.start, offset + seg.end, seg.text, shifted))
            progress(len(chunk) / SAMPLE_RATE)
        text = " ".join(s.text for s in segments if s.text)
        timed = [w for s in segments for w in s.words]
        return FileTranscript(text, language, audio.duration, segments, timed)
