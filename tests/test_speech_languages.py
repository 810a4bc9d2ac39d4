"""Every language heard and spoken for real (model-heavy, so the `slow` tier): a WER bound per
language on the same eight sentences spoken by espeak-ng in each (tools/sentences.py), German
streamed with interims, German files with word timestamps, and the agent's German voice heard
back by the multilingual model."""

from __future__ import annotations

import asyncio
import json
import subprocess

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import llm, stt

from agent import config
from agent.audio import resample
from agent.plugins import espeak
from agent.plugins.echo import EchoLLM, reply_to
from agent.plugins.espeak import EspeakTTS
from agent.plugins.whisper import WhisperBaseSTT, load_model
from tools import sentences, transcribe
from tools.wer import normalize, wer

pytestmark = pytest.mark.slow

# mean WER over the eight sentences of each language, with the engine local/auto picks for it.
# espeak-ng's robotic voices are hard on Whisper base (French hardest); measured on this
# machine: en 0.29 (Moonshine tiny-en), de 0.42, es 0.46, fr 0.86. An English-only model gets
# about 1.0 on the other three.
WER_BOUNDS = {"en": 0.4, "de": 0.55, "es": 0.6, "fr": 0.95}
GERMAN = sentences.SENTENCES["de"][0]  # "Guten Morgen, ich hätte gerne einen Tisch für ..."


@pytest.mark.parametrize("language", sentences.LANGUAGES)
def test_each_language_is_transcribed_in_that_language_within_its_wer_bound(language):
    desc = config.parse("stt", f"local/auto:{language}")
    engine = config.build(desc)
    errors = []
    for sample in sentences.samples(language):
        segments = engine.transcribe_samples(sample.samples())
        errors.append(wer(sample.text, " ".join(s.text for s in segments)))
    assert float(np.mean(errors)) <= WER_BOUNDS[language], (str(desc), errors)


async def test_german_speech_streams_interim_then_final_in_german():
    speech = (sentences.Sample("de", GERMAN).samples() * 32767).astype(np.int16)
    pcm = np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000, np.int16)])
    # an interim every half second of speech: one still lands before the final on a loaded machine
    stream = WhisperBaseSTT(language="de", interim_interval=0.5).stream()
    step = 1600

    async def speak() -> None:  # at real-time pace: interims come while the sentence goes on
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            stream.push_frame(rtc.AudioFrame(chunk.tobytes(), 16000, 1, len(chunk)))
            await asyncio.sleep(0.1)
        stream.end_input()

    speaking = asyncio.create_task(speak())
    events = [ev async for ev in stream]
    await speaking
    kinds = [ev.type for ev in events]
    assert kinds[0] == stt.SpeechEventType.START_OF_SPEECH
    assert kinds[-1] == stt.SpeechEventType.END_OF_SPEECH
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    assert kinds.index(stt.SpeechEventType.INTERIM_TRANSCRIPT) < kinds.index(
        stt.SpeechEventType.FINAL_TRANSCRIPT
    )
    finals = [ev.alternatives[0] for ev in events if ev.type == "final_transcript"]
    assert finals and all(f.language == "de" for f in finals)
    heard = " ".join(f.text for f in finals)
    assert wer(GERMAN, heard) <= 0.55, heard  # measured 0.17-0.5 (robotic voice)
    assert {"guten", "morgen", "abend"} <= set(normalize(heard).split()), heard
    assert 0.3 <= finals[0].start_time < finals[-1].end_time <= len(pcm) / 16000 + 0.1


def test_file_transcription_gives_german_word_timestamps():
    audio = sentences.Sample("de", GERMAN).samples()
    segments = WhisperBaseSTT(language="de").transcribe_samples(audio, word_timestamps=True)
    text = " ".join(s.text for s in segments)
    assert wer(GERMAN, text) <= 0.55, text
    words = [w for s in segments for w in s.words]
    assert len(words) >= len(GERMAN.split()) - 2
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= len(audio) / 16000 + 0.05 for w in words)


async def test_the_agent_answers_in_german():
    echo = EchoLLM(language="de")
    chat = llm.ChatContext()
    # a sentence, not two words: Whisper base tells a language apart reliably on a sentence
    # (on "Du hast gesagt: Guten Morgen" alone it said English, p 0.41, on some CPUs)
    said = "Guten Morgen, ich hätte gerne einen Tisch für zwei."
    chat.add_message(role="user", content=said)
    async with echo.chat(chat_ctx=chat) as stream:
        reply = "".join([c.delta.content async for c in stream if c.delta and c.delta.content])
    assert reply == f"Du hast gesagt: {said}"
    # untranslated languages: the words alone, never an English frame around them
    assert reply_to("Dzień dobry", "pl") == "Dzień dobry"

    frames = [ev.frame async for ev in EspeakTTS(voice="de").synthesize(reply)]
    audio = rtc.combine_audio_frames(frames)
    assert audio.sample_rate == espeak.SAMPLE_RATE and audio.duration > 1.0
    samples = resample(np.frombuffer(audio.data, np.int16), audio.sample_rate)
    samples = samples.astype(np.float32) / 32768
    whisper = load_model("whisper-base")
    detected, probability, _ = whisper.whisper.detect_language(samples)
    assert detected == "de", (detected, probability)
    heard = " ".join(s.text for s in whisper.decode(samples, "de"))
    # espeak-ng is robotic: "gesagt" may come back as another word, the rest is German
    assert {"du", "hast", "guten", "morgen", "tisch"} <= set(normalize(heard).split()), heard


def test_transcribe_a_german_mp3_with_word_timestamps(tmp_path, capsys):
    pcm = sentences.Sample("de", GERMAN).pcm48k()
    mp3 = tmp_path / "talk.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", "48000", "-ac", "1", "-i", "-", str(mp3)],
        input=pcm.tobytes(),
        check=True,
    )
    transcribe.main([str(mp3), "--language", "de", "--timestamps", "word"])
    result = json.loads(capsys.readouterr().out)
    assert result["language"] == "de"
    assert len(result["words"]) >= 8
    assert {"guten", "morgen", "abend"} <= set(normalize(result["text"]).split()), result["text"]
