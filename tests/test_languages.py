"""Every language for real, offline: the call's language picks the local engines that speak it
(`local/auto`), whichever layer sets it; the agent answers in it (espeak-ng's voice, the echo's
phrases); a language no local engine speaks is refused with the engines that would speak it."""

from __future__ import annotations

import json
import subprocess

import pytest

from agent import catalog, config, switching
from agent.plugins import espeak
from services import web

pytestmark = pytest.mark.unit


def settings(env: dict[str, str], cli: dict[str, str] | None = None) -> config.Settings:
    return config.Settings.from_env(env, dotenv=False, cli=cli)


def chosen(s: config.Settings) -> dict[str, str]:
    return {k: str(d) for k, d in config.resolve(s).items()}


def test_the_defaults_speak_english_on_moonshine_and_hibari():
    assert chosen(settings({})) == {
        "stt": "local/moonshine-tiny:en",
        "llm": "local/echo",
        "tts": "local/hibari:heart",
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: settings({"LANGUAGE": "de"}),
        lambda: settings({}, cli={"language": "de"}),
        lambda: switching.with_dispatch(settings({}), json.dumps({"language": "de"})),
        lambda: settings({}).with_layer("participant", {"language": "de"}),
        lambda: settings({}).with_layer("participant", {"stt": "local/auto", "language": "de"}),
        lambda: settings({"STT": "local/auto:de"}),
    ],
    ids=["LANGUAGE", "cli", "dispatch", "participant", "page-picker", "descriptor"],
)
def test_german_from_any_layer_picks_engines_that_speak_german(make):
    assert chosen(make()) == {
        "stt": "local/whisper-base:de",
        "llm": "local/echo",
        "tts": "local/espeak:de",
    }


def test_every_ink_whisper_language_is_real_or_refused_with_who_speaks_it():
    real, refused = [], {}
    for language in catalog.INK_WHISPER_LANGUAGES:
        try:
            got = chosen(settings({"LANGUAGE": language}))
        except config.ConfigError as e:
            refused[language] = str(e)
            continue
        engine = "local/moonshine-tiny" if language == "en" else "local/whisper-base"
        assert got["stt"] == f"{engine}:{language}"
        assert got["tts"] in ("local/hibari:heart", f"local/espeak:{language}")
        real.append(language)
    # every one is heard; those espeak-ng has no voice for are refused, naming the way out
    assert len(real) == len(catalog.ESPEAK_VOICES) == 78
    assert set(refused) == set(catalog.WHISPER_LANGUAGES) - set(catalog.ESPEAK_VOICES)
    for language, message in refused.items():
        assert message.startswith(f"TTS: no local voice speaks {language!r}")
        assert "TTS=local/hibari:heart to answer in English" in message and "\n" not in message


@pytest.mark.parametrize(
    "env,words",
    [
        (
            {"LANGUAGE": "multi"},
            "local/auto does not support language 'multi'; models that do: auto",
        ),
        ({"LANGUAGE": "tlh"}, "local/auto does not support language 'tlh'; no model"),
        (
            {"STT": "local/whisper-base:tlh"},
            "local/whisper-base does not support language 'tlh'; no model",
        ),
        ({"TTS": "local/espeak:jw"}, "local/espeak has no voice 'jw' offline"),
    ],
)
def test_a_language_no_local_engine_speaks_is_refused_in_one_line(env, words):
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings(env))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_page_offers_what_the_chosen_stt_really_speaks():
    page = web.catalog_json(settings({"LANGUAGE": "de"}))
    assert page["default"] == {"stt": "local/auto", "language": "de"}
    offered = {m["id"]: m for m in page["stt"]}
    assert offered["local/auto"]["available"]
    assert offered["local/auto"]["languages"] == sorted(catalog.WHISPER_LANGUAGES)
    assert offered["local/whisper-base"]["languages"] == list(catalog.WHISPER_LANGUAGES)
    assert offered["local/moonshine-tiny"]["languages"] == ["en"]


def test_every_espeak_voice_in_the_catalog_exists():
    missing = [
        voice
        for voice in catalog.ESPEAK_VOICES
        if subprocess.run(
            [espeak.program(), "-v", voice, "-q", "x"], capture_output=True
        ).returncode
    ]
    assert not missing
    # and the ones left out really have no voice
    absent = set(catalog.WHISPER_LANGUAGES) - set(catalog.ESPEAK_VOICES)
    assert all(
        subprocess.run([espeak.program(), "-v", v, "-q", "x"], capture_output=True).returncode
        for v in absent
    )


def test_a_missing_espeak_program_is_one_line(monkeypatch):
    monkeypatch.setattr(config.descriptors.shutil, "which", lambda name: None)
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings({"LANGUAGE": "de"}))
    assert "needs the espeak-ng program: run scripts/setup.sh" in str(error.value)


def test_live_language_switch_rebuilds_the_voice_and_the_echo():
    english = settings({})
    german = english.with_layer("participant", {"language": "de"})
    old, new = config.resolve(english), config.resolve(german)
    assert (str(old["tts"]), str(new["tts"])) == ("local/hibari:heart", "local/espeak:de")
    assert config.call_language(german) == "de"
    assert config.build(new["llm"], german).language == "de"
    assert config.build(new["tts"], german).voice == "de"
