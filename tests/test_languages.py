"""Every language for real, offline: the call's language picks the local engines that speak it
(`local/auto`), whichever layer sets it; the agent answers in it (espeak-ng's voice, the echo's
phrases); a language no local engine speaks is refused with the engines that would speak it."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from livekit.agents import UserInputTranscribedEvent
from livekit.agents.types import NOT_GIVEN

from agent import catalog, config, switching
from agent.plugins import espeak
from services import web

pytestmark = pytest.mark.unit


def settings(env: dict[str, str], cli: dict[str, str] | None = None) -> config.Settings:
    return config.Settings.from_env(env, dotenv=False, cli=cli)


def plan(env: dict[str, str], cli: dict[str, str] | None = None) -> config.Plan:
    return config.resolve(settings(env, cli))


# a local gateway in place of LiveKit Inference: the cloud STT descriptors are reachable
GATEWAY = {
    "LIVEKIT_INFERENCE_URL": "http://127.0.0.1:8090",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret",
}


def chosen(p: config.Plan) -> dict[str, str]:
    return {k: str(d) for k, d in p.components.items()}


def test_the_defaults_speak_english_on_moonshine_and_hibari():
    assert chosen(plan({})) == {
        "stt": "local/moonshine-tiny:en",
        "llm": "local/echo",
        "tts": "local/hibari:heart",
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: plan({"LANGUAGE": "de"}),
        lambda: plan({}, cli={"language": "de"}),
        lambda: switching.with_dispatch(plan({}), json.dumps({"language": "de"})),
        lambda: plan({}).with_layer("participant", {"language": "de"}),
        lambda: plan({}).with_layer("participant", {"stt": "local/auto", "language": "de"}),
        lambda: plan({"STT": "local/auto:de"}),
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
    for language in catalog.WHISPER_LANGUAGES:
        try:
            got = chosen(plan({"LANGUAGE": language}))
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
        ({"LANGUAGE": "tlh"}, "local/auto does not support language 'tlh'; no model"),
        (
            {"STT": "local/whisper-base:tlh"},
            "local/whisper-base does not support language 'tlh'; no model",
        ),
        ({"TTS": "local/espeak:jw"}, "local/espeak has no voice 'jw' offline"),
        (
            {"STT": "local/moonshine-tiny:multi"},
            "local/moonshine-tiny does not support language 'multi'; models that do: auto, "
            "deepgram/nova-3, local/auto, local/whisper-base",
        ),
        (
            {**GATEWAY, "STT": "deepgram/nova-2:multi"},
            "deepgram/nova-2 does not support language 'multi'; models that do: auto",
        ),
        (
            {"LANGUAGE": "multi", "LANGUAGES": "en,xx"},
            "LANGUAGES=en,xx (environment): 'xx' is not a language Whisper detects: use "
            "comma-separated ISO 639-1 codes like en,de,es",
        ),
        (
            {"LANGUAGE": "multi", "LANGUAGES": "en,jw"},
            "no local voice speaks 'jw' (local/auto picks from local/hibari, local/espeak)",
        ),
    ],
)
def test_a_language_no_local_engine_speaks_is_refused_in_one_line(env, words):
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings(env))
    assert words in str(error.value) and "\n" not in str(error.value)


MULTI = {"stt": "local/whisper-base:multi", "llm": "local/echo", "tts": "local/hibari:heart"}


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: plan({"LANGUAGE": "multi"}), MULTI),
        (lambda: plan({"STT": "local/auto:multi"}), MULTI),
        (lambda: switching.with_dispatch(plan({}), json.dumps({"language": "multi"})), MULTI),
        (lambda: plan({}).with_layer("participant", {"language": "multi"}), MULTI),
        (
            lambda: plan({**GATEWAY, "STT": "deepgram/nova-3:multi"}),
            {**MULTI, "stt": "deepgram/nova-3:multi"},
        ),
        (lambda: plan({**GATEWAY, "STT": "auto:multi"}), {**MULTI, "stt": "auto:multi"}),
    ],
    ids=["LANGUAGE", "local-auto", "dispatch", "participant", "nova-3", "auto"],
)
def test_multi_starts_on_whisper_or_the_cloud_stt_with_the_default_local_voice(make, expected):
    assert chosen(make()) == expected


def test_multi_builds_whisper_detecting_among_languages_and_an_echo_starting_in_english():
    p = plan({"LANGUAGE": "multi", "LANGUAGES": "en, de,es"})
    whisper = config.build(p.stt[0], p)
    assert (whisper.language, whisper._opts.candidates) == ("multi", ("en", "de", "es"))
    echo = config.build(p.llm, p)
    assert echo.language == "en"
    echo.update_options(language="de")
    assert echo.language == "de"
    # without LANGUAGES, any of Whisper's languages
    any_language = plan({"LANGUAGE": "multi"})
    assert config.build(any_language.stt[0], any_language)._opts.candidates == ()


def test_the_page_offers_what_the_chosen_stt_really_speaks():
    page = web.catalog_json(settings({"LANGUAGE": "de"}))
    assert page["default"] == {"stt": "local/auto", "language": "de"}
    offered = {m["id"]: m for m in page["stt"]}
    assert offered["local/auto"]["available"]
    assert offered["local/auto"]["languages"] == sorted([*catalog.WHISPER_LANGUAGES, "multi"])
    assert offered["local/whisper-base"]["languages"] == [*catalog.WHISPER_LANGUAGES, "multi"]
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
    english = plan({})
    german = english.with_layer("participant", {"language": "de"})
    assert (str(english.tts), str(german.tts)) == ("local/hibari:heart", "local/espeak:de")
    assert german.language == "de"
    assert config.build(german.llm, german).language == "de"
    assert config.build(german.tts, german).voice == "de"


class Recorder:
    """The parts of a running session LiveSTT touches: the agent records what is swapped in."""

    def __init__(self, llm) -> None:
        self.llm, self.stt, self.swaps = llm, NOT_GIVEN, []

    def update_options(self, **changes) -> None:
        self.swaps.append(changes)

    def isconnected(self) -> bool:  # the room: the page's messages go nowhere here
        return False


def heard(text: str, language: str) -> UserInputTranscribedEvent:
    return UserInputTranscribedEvent(transcript=text, is_final=True, language=language)


async def test_a_multi_call_answers_in_the_language_of_each_final():
    live = switching.LiveSTT(plan({"LANGUAGE": "multi"}), "")
    built = config.session_components(live.plan)
    agent = Recorder(NOT_GIVEN)
    live._session, live._agent, live._room = Recorder(built["llm"]), agent, Recorder(None)
    assert (live.answering, built["llm"].language, str(live.voice)) == (
        "en",
        "en",
        "local/hibari:heart",
    )

    live._on_transcribed(heard("Guten Morgen.", "de"))
    assert built["llm"].language == "de" and live.answering == "de"
    assert [type(s["tts"]).__name__ for s in agent.swaps] == ["EspeakTTS"]
    assert agent.swaps[-1]["tts"].voice == "de"
    live._on_transcribed(heard("Wie geht's?", "de"))  # the same language: nothing to swap
    live._on_transcribed(heard("Buenos días.", "es-ES"))  # a region: the language's voice
    live._on_transcribed(heard("Thank you.", "en"))
    assert [str(getattr(s["tts"], "voice", "heart")) for s in agent.swaps] == ["de", "es", "heart"]
    assert built["llm"].language == "en"
    # a language no local voice speaks: the words follow, the voice stays
    live._on_transcribed(heard("Sugeng enjing.", "jw"))
    assert len(agent.swaps) == 3 and built["llm"].language == "jw"
    await asyncio.sleep(0)  # the page's messages (no room: dropped)


async def test_a_call_in_one_language_keeps_its_voice_whatever_is_heard():
    live = switching.LiveSTT(plan({"LANGUAGE": "de"}), "")
    built = config.session_components(live.plan)
    agent = Recorder(NOT_GIVEN)
    live._session, live._agent, live._room = Recorder(built["llm"]), agent, Recorder(None)
    live._on_transcribed(heard("Thank you.", "en"))
    assert agent.swaps == [] and built["llm"].language == "de"
    await asyncio.sleep(0)


async def test_a_switch_to_a_language_the_turn_model_does_not_speak_ends_turns_by_silence():
    live = switching.LiveSTT(plan({"TURN_DETECTION": "smart-turn"}), "")
    session, agent = TurnRecorder(), Recorder(NOT_GIVEN)
    live._session, live._agent, live._room = session, agent, Recorder(None)
    assert live.plan.turn_detection == "smart-turn"
    assert await live.apply({"language": "sv"}) == ""  # Swedish: not one of Smart Turn's
    assert live.plan.turn_detection == "vad"
    assert session.turns == [("vad", {"min_delay": 0.45, "max_delay": 0.45})]
    assert await live.apply({"language": "de"}) == ""  # back to a language it speaks
    assert type(session.turns[-1][0]).__name__ == "SmartTurnDetector"
    assert await live.apply({"language": "fr"}) == ""  # the same detector: nothing to change
    assert len(session.turns) == 2


class TurnRecorder(Recorder):
    """A session that records the turn options it is given."""

    def __init__(self) -> None:
        super().__init__(NOT_GIVEN)
        self.turns = []

    def update_options(self, turn_detection=NOT_GIVEN, endpointing_opts=NOT_GIVEN) -> None:
        self.turns.append((turn_detection, endpointing_opts))
