"""The offline Whisper plugins: tiny.en and the multilingual base model, streaming in calls
(speech segments, interim then final), batch with word timings; the base model is assembled
from its two wheels and speaks Whisper's own 100 languages."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt

from agent import catalog, config
from agent.errors import ConfigError
from agent.plugins.hibari import SAMPLE_RATE
from agent.plugins.whisper import (
    BASE_PARTS,
    WhisperBaseSTT,
    WhisperSTT,
    assemble_base,
    load_model,
)
from tests.speech import frames, silence, spoken, spoken_16k
from tools.sentences import samples
from tools.wer import cer, wer

pytestmark = pytest.mark.unit

SENTENCE = "Please book a table for two at seven tonight."


@pytest.mark.parametrize(
    "text,cls", [("local/whisper-tiny:en", WhisperSTT), ("local/whisper-base:de", WhisperBaseSTT)]
)
def test_descriptors_build_streaming_plugins(text, cls):
    built = config.build(config.parse("stt", text))
    assert type(built) is cls
    assert built.capabilities.streaming and built.capabilities.interim_results
    assert f"{built.provider}/{built.model}:{built.language}" == text


def test_a_language_the_model_does_not_know_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="local/whisper-base does not speak 'xx'"):
        WhisperBaseSTT(language="xx")
    with pytest.raises(ConfigError, match="local/whisper-tiny does not speak 'de'; it speaks: en"):
        WhisperSTT(language="de")
    stt_de = WhisperBaseSTT(language="de")
    stt_de.update_options(language="fr")
    assert stt_de.language == "fr"
    with pytest.raises(ConfigError):
        stt_de.update_options(language="tlh")
    assert stt_de.language == "fr"
    with pytest.raises(ConfigError, match="local/whisper-base does not speak 'xx'"):
        WhisperBaseSTT(language="multi", languages=("en", "xx"))


def test_assembly_is_stamped_idempotent_and_repairs_a_damaged_model(tmp_path):
    target = assemble_base(tmp_path / "whisper-base")
    names = {p.name for p in target.iterdir()}
    assert names == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
        "assembled-from.txt",
    }
    stamp = (target / "assembled-from.txt").read_text()
    assert all(f"{d}==1.0.0" in stamp for d in BASE_PARTS)
    model = target / "model.bin"
    size, mtime = model.stat().st_size, model.stat().st_mtime_ns
    assert size > 140_000_000  # both halves: 2 x 72.6 MB
    assert assemble_base(target) == target and model.stat().st_mtime_ns == mtime  # not redone
    with model.open("r+b") as f:
        f.truncate(1000)
    assemble_base(target)
    assert model.stat().st_size == size


def test_a_model_that_cannot_be_assembled_is_one_actionable_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as error:
        assemble_base(blocker / "whisper-base")
    message = str(error.value)
    assert "\n" not in message and "run scripts/setup.sh" in message


def test_the_assembled_model_is_multilingual_and_speaks_the_catalogs_languages():
    whisper = load_model("whisper-base").whisper
    assert whisper.model.is_multilingual
    # the model's own list is the catalog's, which is ink-whisper's 100 (the identity map)
    assert tuple(whisper.supported_languages) == catalog.WHISPER_LANGUAGES
    row = catalog.MODELS[("stt", "local/whisper-base")]
    assert row.languages == (*catalog.WHISPER_LANGUAGES, "multi") and row.word_timestamps


async def test_multi_transcribes_each_utterance_in_the_language_it_detects():
    """One stream, three utterances: English (Hibari's voice), German and Spanish (espeak-ng's
    voices), each final in its own language, detected among LANGUAGES."""
    said = [
        ("en", SENTENCE, spoken_16k(SENTENCE)),
        *((s.language, s.text, s.samples()) for s in (samples("de")[1], samples("es")[1])),
    ]
    audio = np.concatenate([np.concatenate([pcm, silence(1.0)]) for _, _, pcm in said])
    stream = WhisperBaseSTT(language="multi", languages=("en", "de", "es")).stream()
    for frame in frames(audio):
        stream.push_frame(frame)
    stream.end_input()
    finals = [
        ev.alternatives[0] async for ev in stream if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    ]
    assert [f.language for f in finals] == [language for language, _, _ in said]
    for final, (_, text, _) in zip(finals, said, strict=True):
        assert cer(text, final.text) <= 0.4, (text, final.text)


def test_the_call_path_pads_the_encoder_less_and_hears_the_same_words():
    """A call's decode (encoder input padded to ENCODER_SECONDS) against faster-whisper's
    (padded to 30 s): the same words, in less time."""
    model = load_model("whisper-base")
    # over several sentences: one sentence's errors move either way with the padding
    full_cer, heard_cer = [], []
    for sample in samples("de")[:4]:
        audio = sample.samples()
        full = " ".join(s.text for s in model.decode(audio, "de"))
        heard = model.hear(audio, "de")
        assert heard.language == "de"
        full_cer.append(cer(sample.text, full))
        heard_cer.append(cer(sample.text, " ".join(s.text for s in heard.segments)))
    assert np.mean(heard_cer) <= np.mean(full_cer) + 0.1, (heard_cer, full_cer)
    assert model.hear(audio, "multi", ("fr", "es")).language in ("fr", "es")  # only among them


async def test_silence_gives_no_transcript():
    stream = WhisperBaseSTT(language="de").stream()
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 2) * 30).astype(np.int16)  # about -60 dBFS
    for i in range(0, len(noise), 1600):
        stream.push_frame(rtc.AudioFrame(noise[i : i + 1600].tobytes(), 16000, 1, 1600))
    stream.end_input()
    assert not [ev async for ev in stream if ev.alternatives and ev.alternatives[0].text]


async def test_tiny_recognizes_24khz_speech_with_word_timings():
    pcm = (np.clip(spoken(SENTENCE), -1, 1) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, len(pcm))  # session rate, not 16 kHz
    event = await WhisperSTT().recognize([frame])
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    alt = event.alternatives[0]
    assert wer(SENTENCE, alt.text) <= 0.1, alt.text
    assert len(alt.words) == len(SENTENCE.split())
    duration = len(pcm) / SAMPLE_RATE
    for word in alt.words:
        assert 0 <= word.start_time <= word.end_time <= duration
