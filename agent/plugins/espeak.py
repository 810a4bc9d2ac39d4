"""espeak-ng as a LiveKit TTS plugin: the agent's voice in the languages Hibari does not speak.

espeak-ng (Debian package `espeak-ng`, installed by scripts/setup.sh) speaks 100+ languages,
offline and robotically. It is a GPL-3 program, so it runs as a separate process per reply
(`espeak-ng -v de --stdout`), never linked in. The voice is a language code (`local/espeak:de`);
agent/catalog.py lists the ones the local pipeline uses. Audio is passed on as espeak-ng writes
it, so a long reply starts playing before it is fully synthesized.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, APIError, tts, utils

from ..errors import ConfigError

PROGRAM = "espeak-ng"
SAMPLE_RATE = 22050  # every espeak-ng voice
WORDS_PER_MINUTE = 150  # a little slower than espeak's 175: easier to follow
_HEADER = 44  # RIFF/WAVE header of espeak-ng's --stdout: fmt chunk, then the data chunk


def program() -> str:
    """The espeak-ng executable, or a ConfigError that says how to install it."""
    path = shutil.which(PROGRAM)
    if path is None:
        raise ConfigError(
            "local/espeak needs the espeak-ng program: run scripts/setup.sh "
            "(or `apt-get install espeak-ng`)"
        )
    return path


class EspeakTTS(tts.TTS):
    def __init__(self, *, voice: str = "en", speed: int = WORDS_PER_MINUTE) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self._voice = voice
        self._speed = speed

    @property
    def model(self) -> str:
        return "espeak"

    @property
    def provider(self) -> str:
        return "local"

    @property
    def voice(self) -> str:
        return self._voice

    def update_options(self, *, voice: str | None = None) -> None:
        if voice:
            self._voice = voice

    def prewarm(self) -> None:
        program()

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> EspeakStream:
        return EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class EspeakStream(tts.ChunkedStream):
    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: EspeakTTS = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        proc = await asyncio.create_subprocess_exec(
            program(),
            *("-v", self._tts.voice, "-s", str(self._tts._speed), "-b", "1", "--stdout"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdin and proc.stdout and proc.stderr
            proc.stdin.write(self.input_text.encode())  # stdin: no quoting, no option injection
            proc.stdin.close()
            header = await proc.stdout.read(_HEADER)
            while len(header) < _HEADER:
                more = await proc.stdout.read(_HEADER - len(header))
                if not more:
                    break
                header += more
            if len(header) < _HEADER or header[:4] != b"RIFF" or header[36:40] != b"data":
                error = (await proc.stderr.read()).decode(errors="replace").strip()
                raise APIError(f"espeak-ng -v {self._tts.voice} gave no audio: {error}")
            (rate,) = struct.unpack("<I", header[24:28])
            output_emitter.initialize(
                request_id=utils.shortuuid(),
                sample_rate=rate,
                num_channels=1,
                mime_type="audio/pcm",
            )
            carry = b""  # an odd byte left over: 16-bit samples never split across pushes
            while chunk := await proc.stdout.read(8192):
                chunk, carry = carry + chunk, b""
                if len(chunk) % 2:
                    chunk, carry = chunk[:-1], chunk[-1:]
                output_emitter.push(chunk)
            output_emitter.flush()
            await proc.wait()
        finally:
            if proc.returncode is None:  # interrupted: stop synthesizing
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
