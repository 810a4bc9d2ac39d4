"""The settings layer: every bad configuration gets one clear line, every good one maps to the
object an AgentSession takes, and the layers override each other in the documented order."""

import os
import pickle
from pathlib import Path

import pytest
from livekit.agents import inference
from livekit.plugins import cartesia

from agent import catalog, config, switching
from agent.fallback import FallbackSTT
from agent.plugins.moonshine import MoonshineSTT

pytestmark = pytest.mark.unit

INF = {  # LiveKit Inference reachable (a gateway), with credentials
    "LIVEKIT_INFERENCE_URL": "http://127.0.0.1:9/v1",
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret",
}
CLOUD = {
    "LIVEKIT_URL": "wss://demo.livekit.cloud",
    "LIVEKIT_API_KEY": "k",
    "LIVEKIT_API_SECRET": "s",
}


def settings(env: dict[str, str], **layers) -> config.Settings:
    s = config.Settings.from_env(env, dotenv=False, cli=layers.pop("cli", None))
    for layer in ("dispatch", "participant"):
        if layer in layers:
            s = s.with_layer(layer, layers[layer])
    return s


def plan(env: dict[str, str], **layers) -> config.Plan:
    return config.resolve(settings(env, **layers))


# (environment, words the one-line error must contain)
BAD = [
    # malformed descriptors
    ({"STT": "cartesia"}, "is not a descriptor: use provider/model[:variant]"),
    ({"STT": "/ink-whisper:en"}, "is not a descriptor"),
    ({"STT": "cartesia/:en"}, "is not a descriptor"),
    ({"STT": "cartesia/ink/whisper:en"}, "is not a descriptor"),
    ({"STT": "cartesia/ink whisper:en"}, "is not a descriptor"),
    ({"STT": "cartesia/ink-whisper:", **INF}, "put a language after ':'"),
    ({"TTS": "local/hibari:"}, "put a voice after ':'"),
    # unknown provider or model, with the closest suggestion
    (
        {"STT": "cartesai/ink-whisper:en"},
        "unknown STT provider 'cartesai'; did you mean 'cartesia'",
    ),
    (
        {"STT": "deepgram/nova-4:en"},
        "unknown STT model 'deepgram/nova-4'; did you mean 'deepgram/nova-3'",
    ),
    ({"STT": "local/moonshine-small:en"}, "did you mean 'local/moonshine-tiny'"),
    ({"STT": "openai/gpt-4.1"}, "is an LLM model: set it as LLM=openai/gpt-4.1"),
    ({"STT": "realtime/openai"}, "is an LLM model"),
    ({"TTS": "deepgram/nova-3"}, "is an STT model"),
    ({"LLM": "openai/gpt-9"}, "unknown LLM model 'openai/gpt-9'"),
    ({"LLM": "anthropic/claude-sonnet"}, "unknown LLM provider 'anthropic'"),
    ({"TTS": "cartesia/sonic-9:x"}, "unknown TTS model 'cartesia/sonic-9'; did you mean"),
    # languages, saying which models do support them
    ({"STT": "cartesia/ink-whisper:xx", **INF}, "does not support language 'xx'; no model"),
    (
        {"STT": "deepgram/nova-3:ko", **INF},
        "models that do: auto, cartesia/ink-whisper, deepgram/nova-2",
    ),
    ({"STT": "local/moonshine-tiny:de"}, "local/moonshine-tiny does not support language 'de'"),
    (
        {"STT": "assemblyai/universal-streaming:de", **INF},
        "assemblyai/universal-streaming-multilingual",
    ),
    ({"STT": "cartesia/ink-whisper:English", **INF}, "'English' is not a language code"),
    ({"STT": "auto:xx", **INF}, "auto does not support language 'xx'"),
    ({"STT": "auto:tlh", **INF}, "auto does not support language 'tlh'"),
    # the local defaults speak every Whisper language; a language none speaks names who does
    (
        {"STT": "local/moonshine-tiny:multi"},
        "local/moonshine-tiny does not support language 'multi'; models that do: auto, "
        "deepgram/nova-3, local/auto, local/whisper-base",
    ),
    (
        {"STT": "local/moonshine-tiny:en", "LANGUAGE": "de"},
        "LANGUAGE (environment) for local/moonshine-tiny: local/moonshine-tiny does not support",
    ),
    ({"LANGUAGE": "yo"}, "TTS: no local voice speaks 'yo'"),
    ({"LANGUAGE": "english"}, "is not a language code"),
    # the fallback chain
    ({"STT_FALLBACK": "local/moonshine-tiny:en,,local/whisper-tiny:en"}, "has an empty entry"),
    ({"STT_FALLBACK": "local/moonshine-tiny:en"}, "local/moonshine-tiny appears twice"),
    (
        {"STT_FALLBACK": "deepgarm/nova-3:en"},
        "STT_FALLBACK (environment): unknown STT provider 'deepgarm'",
    ),
    (
        {"STT_FALLBACK": "deepgram/nova-3:en"},
        "STT_FALLBACK (environment)=deepgram/nova-3:en goes through LiveKit Inference",
    ),
    (
        {
            "STT": "deepgram/nova-3:en",
            "STT_FALLBACK": "local/moonshine-tiny:en",
            "LANGUAGE": "fr",
            **INF,
        },
        "for local/moonshine-tiny: local/moonshine-tiny does not support language 'fr'",
    ),
    # credentials and endpoints, naming the variable
    ({"STT": "cartesia/ink-whisper:en"}, "set CARTESIA_API_KEY to use the plugin"),
    (
        {"STT": "cartesia/ink-whisper:en", "LIVEKIT_INFERENCE_URL": "http://x/v1"},
        "needs LIVEKIT_API_KEY and LIVEKIT_API_SECRET",
    ),
    (
        {"LLM": "openai/gpt-4.1-mini"},
        "LLM (environment)=openai/gpt-4.1-mini goes through LiveKit Inference",
    ),
    ({"LLM": "realtime/openai:coral"}, "needs OPENAI_API_KEY"),
    ({"LLM": "realtime/gemini:Puck"}, "needs GOOGLE_API_KEY"),
    ({"LLM": "realtime/xai"}, "needs XAI_API_KEY"),
    # a plugin that is not installed: one line naming the package
    (
        {"LLM": "realtime/xai:eve", "XAI_API_KEY": "x"},
        "needs the Python package livekit-plugins-xai: run `uv add livekit-plugins-xai`",
    ),
    ({"LLM": "realtime/gemini", "GOOGLE_API_KEY": "x"}, "livekit-plugins-google"),
    # voices and variants
    (
        {"LLM": "realtime/openai:corral", "OPENAI_API_KEY": "x"},
        "no voice 'corral'; did you mean 'coral'",
    ),
    ({"LLM": "openai/gpt-4.1-mini:fast", **INF}, "an LLM descriptor takes no ':variant'"),
    ({"LLM": "ollama/llama3.2:8b"}, "an LLM descriptor takes no ':variant'"),
    ({"TTS": "local/hibari:bella"}, "has no voice 'bella' offline; voices: heart"),
    # STT_OPTIONS: JSON, applicability, types and ranges
    ({"STT_OPTIONS": "{min_volume: 1}"}, "STT_OPTIONS (environment) must be a JSON object"),
    ({"STT_OPTIONS": "[0.1]"}, "must be a JSON object"),
    ({"STT_OPTIONS": '"loud"'}, "must be a JSON object"),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"min_volume": 1.5}', **INF},
        "min_volume=1.5 is out of range [0.0, 1.0]",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"min_volume": -0.1}', **INF},
        "out of range [0.0, 1.0]",
    ),
    (
        {
            "STT": "cartesia/ink-whisper:en",
            "STT_OPTIONS": '{"max_silence_duration_secs": 0}',
            **INF,
        },
        "max_silence_duration_secs=0 is out of range (0.0, inf]",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"min_volume": "loud"}', **INF},
        "min_volume must be a number, not 'loud'",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"min_volume": true}', **INF},
        "min_volume must be a number",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"min_volume": NaN}', **INF},
        "out of range",
    ),
    (
        {"STT": "deepgram/nova-3:en", "STT_OPTIONS": '{"min_volume": 0.1}', **INF},
        "'min_volume' does not apply to deepgram/nova-3 (it takes:",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"turn_end_threshold": 0.2}', **INF},
        "'turn_end_threshold' does not apply to cartesia/ink-whisper (it takes: max_silence_duration_secs, min_volume)",
    ),
    (
        {"STT": "cartesia/ink-whisper:en", "STT_OPTIONS": '{"endpointing": 25}', **INF},
        "deepgram/nova-2, deepgram/nova-3 take it",
    ),
    (
        {"STT_OPTIONS": '{"min_volume": 0.1}'},
        "does not apply to local/moonshine-tiny (it takes: none)",
    ),
    (
        {
            "STT": "cartesia/ink-whisper:en",
            "STT_OPTIONS": '{"min_volume": 0.1}',
            "CARTESIA_API_KEY": "sk",
        },
        "min_volume is a LiveKit Inference option; the cartesia plugin (used because CARTESIA_API_KEY is set) has no such setting",
    ),
    (
        {"STT": "deepgram/nova-3:en", "STT_OPTIONS": '{"filler_words": "yes"}', **INF},
        "filler_words must be true or false",
    ),
    (
        {"STT": "deepgram/nova-3:en", "STT_OPTIONS": '{"endpointing": 2.5}', **INF},
        "endpointing must be an integer",
    ),
    (
        {"STT": "deepgram/flux-general:en", "STT_OPTIONS": '{"eot_threshold": 0.95}', **INF},
        "eot_threshold=0.95 is out of range [0.5, 0.9]",
    ),
    (
        {
            "STT": "assemblyai/universal-streaming:en",
            "STT_OPTIONS": '{"keyterms_prompt": [1, 2]}',
            **INF,
        },
        "keyterms_prompt must be a string or a list of strings",
    ),
    # other settings
    (
        {"TURN_DETECTION": "semantic"},
        "TURN_DETECTION (environment): Input should be 'auto', 'eot', 'smart-turn', 'vad', 'stt', "
        "'manual' or 'multilingual'",
    ),
    ({"MAX_CALLS": "0"}, "MAX_CALLS (environment): Input should be greater than or equal to 1"),
    (
        {"CPU_PRESSURE_LIMIT": "-5"},
        "CPU_PRESSURE_LIMIT (environment): Input should be greater than or equal to 0",
    ),
    ({"AGENT_HTTP_PORT": "70000"}, "AGENT_HTTP_PORT (environment)"),
    ({"JOB_EXECUTOR": "fork"}, "JOB_EXECUTOR (environment)"),
]


@pytest.mark.parametrize("env,words", BAD, ids=[f"{i:02d}" for i in range(len(BAD))])
def test_bad_configuration_is_one_clear_line(env, words):
    with pytest.raises(config.ConfigError) as error:
        config.resolve(settings(env))
    message = str(error.value)
    assert words in message
    assert "\n" not in message and "Traceback" not in message


BAD_LAYERS = [
    (
        "dispatch",
        {"livekit_api_key": "x"},
        "dispatch: 'livekit_api_key' cannot be set here; allowed: stt, language",
    ),
    (
        "participant",
        {"stt_options": "{}"},
        "participant: 'stt_options' cannot be set here; allowed: stt, language",
    ),
    ("participant", {"llm": "openai/gpt-5"}, "'llm' cannot be set here"),
    ("dispatch", {"stt": 5}, "STT (dispatch): Input should be a valid string"),
    (
        "participant",
        {"stt": "cartesia/ink-whisper:zz"},
        "STT (participant): cartesia/ink-whisper does not support language 'zz'",
    ),
    ("cli", {"nonsense": "1"}, "cli: 'nonsense' cannot be set here"),
]


@pytest.mark.parametrize("layer,values,words", BAD_LAYERS)
def test_a_layer_may_set_only_its_keys(layer, values, words):
    with pytest.raises(config.ConfigError, match=None) as error:
        config.resolve(settings(INF).with_layer(layer, values))
    assert words in str(error.value)


@pytest.mark.parametrize(
    "metadata,words",
    [
        ("{stt: x}", "dispatch metadata is not JSON"),
        ('["de"]', "dispatch metadata must be a JSON object"),
        ('{"language": "xx"}', "LANGUAGE (dispatch): local/auto does not support language 'xx'"),
    ],
)
def test_bad_dispatch_metadata(metadata, words):
    with pytest.raises(config.ConfigError) as error:
        switching.with_dispatch(plan({}), metadata)
    assert words in str(error.value)


@pytest.mark.parametrize(
    "argv,words",
    [
        (["start", "--stt"], "--stt needs a value"),
        (["start", "--language", "--dev"], "--language needs a value"),
    ],
)
def test_bad_cli_flags(argv, words):
    with pytest.raises(config.ConfigError, match=words):
        config.split_cli_flags(argv)


def test_a_bad_log_format_in_dotenv_stops_the_worker_in_one_line(tmp_path, monkeypatch, capsys):
    from agent.__main__ import main

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LOG_FORMAT=yaml\n")
    with pytest.raises(SystemExit) as stopped:
        main(["start"])
    assert stopped.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("LOG_FORMAT='yaml': use 'text' (the default) or 'json'")
    )


# -- good configurations and what they build ---------------------------------------------------


def built_stt(env):
    return config.build_stt(plan(env))


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"STT": "cartesia/ink-whisper:en", **CLOUD}, "cartesia/ink-whisper:en"),
        ({"STT": "cartesia/ink", **CLOUD}, "cartesia/ink-whisper:en"),  # LiveKit's short name
        ({"STT": "cartesia/ink-whisper:hi", **CLOUD}, "cartesia/ink-whisper:hi"),  # Cartesia's list
        ({"STT": "deepgram/nova-3:multi", **CLOUD}, "deepgram/nova-3:multi"),
        ({"STT": "auto:es", **CLOUD}, "auto:es"),
        ({"STT": "elevenlabs/scribe_v1:sw", **CLOUD}, "elevenlabs/scribe_v1:sw"),
        ({"STT": "deepgram/nova-3:en", "LANGUAGE": "de", **CLOUD}, "deepgram/nova-3:de"),
    ],
)
def test_descriptor_string_when_nothing_else_is_set(env, expected):
    assert built_stt(env) == expected


@pytest.mark.parametrize(
    "env,model,language,extra",
    [
        (
            {"STT": "cartesia/ink-whisper:de", "STT_OPTIONS": '{"min_volume": 0.2}', **CLOUD},
            "cartesia/ink-whisper",
            "de",
            {"min_volume": 0.2},
        ),
        (
            {
                "STT": "cartesia/ink-whisper:en",
                "STT_OPTIONS": '{"max_silence_duration_secs": 0.8}',
                **CLOUD,
            },
            "cartesia/ink-whisper",
            "en",
            {"max_silence_duration_secs": 0.8},
        ),
        (
            {
                "STT": "deepgram/nova-3:en",
                "STT_OPTIONS": '{"endpointing": 100, "smart_format": true}',
                **CLOUD,
            },
            "deepgram/nova-3",
            "en",
            {"endpointing": 100, "smart_format": True},
        ),
        (
            {
                "STT": "assemblyai/universal-streaming:en",
                "STT_OPTIONS": '{"end_of_turn_confidence_threshold": 0.5}',
                **CLOUD,
            },
            "assemblyai/universal-streaming",
            "en",
            {"end_of_turn_confidence_threshold": 0.5},
        ),
        (
            {"STT": "cartesia/ink-whisper:en", **INF},
            "cartesia/ink-whisper",
            "en",
            {},
        ),  # a gateway URL
    ],
)
def test_inference_stt_when_options_or_a_gateway_are_set(env, model, language, extra):
    stt = built_stt(env)
    assert isinstance(stt, inference.STT)
    assert (stt.model, stt._opts.language, stt._opts.extra_kwargs) == (model, language, extra)
    if "LIVEKIT_INFERENCE_URL" in env:
        assert stt._opts.base_url == env["LIVEKIT_INFERENCE_URL"]


@pytest.mark.parametrize("language", ["en", "de"])
def test_cartesia_plugin_with_the_users_key_is_always_ink_whisper(language):
    """English is where the plugin would silently pick ink-2 if the model were not named."""
    env = {"STT": f"cartesia/ink-whisper:{language}", "CARTESIA_API_KEY": "sk", **INF}
    stt = built_stt(env)
    assert isinstance(stt, cartesia.STT)
    assert (stt.model, stt._language) == ("ink-whisper", language)


def test_cartesia_base_url_reaches_the_plugin():
    env = {
        "STT": "cartesia/ink-whisper:en",
        "CARTESIA_API_KEY": "sk",
        "CARTESIA_BASE_URL": "http://127.0.0.1:9",
    }
    assert built_stt(env)._ws_base_url == "ws://127.0.0.1:9"


def test_local_engine_and_fallback_chain():
    assert isinstance(built_stt({}), MoonshineSTT)
    chain = built_stt(
        {
            "STT": "deepgram/nova-3:en",
            "STT_FALLBACK": "cartesia/ink-whisper:en, local/moonshine-tiny:en",
            **INF,
        }
    )
    assert isinstance(chain, FallbackSTT)
    assert [type(m) for m in chain.members] == [inference.STT, inference.STT, MoonshineSTT]
    assert [m.model for m in chain.members][:2] == ["deepgram/nova-3", "cartesia/ink-whisper"]


def test_language_reaches_every_member_of_the_chain():
    p = plan(
        {
            "STT": "deepgram/nova-3:en",
            "STT_FALLBACK": "cartesia/ink-whisper:en",
            "LANGUAGE": "de",
            **INF,
        }
    )
    assert [str(d) for d in p.stt] == [
        "deepgram/nova-3:de",
        "cartesia/ink-whisper:de",
    ]
    assert [m._opts.language for m in config.build_stt(p).members] == ["de", "de"]


def test_realtime_model_replaces_stt_and_tts():
    from livekit.plugins import openai

    components = config.session_components(
        plan({"LLM": "realtime/openai:coral", "OPENAI_API_KEY": "sk-test"})
    )
    assert list(components) == ["llm"]
    assert isinstance(components["llm"], openai.realtime.RealtimeModel)
    assert str(config.parse("llm", "realtime/gemini")) == "realtime/gemini:Puck"


def test_catalog_covers_the_seeds():
    seeds = {
        "stt": [
            "assemblyai/universal-streaming:en",
            "assemblyai/universal-streaming-multilingual:en",
            "cartesia/ink",
            "deepgram/flux-general:en",
            "deepgram/nova-3:en",
            "deepgram/nova-3:multi",
            "deepgram/nova-2:en",
            "elevenlabs/scribe_v1:en",
            "auto:en",
            "auto:es",
        ],
        "llm": [f"{m.id}" for m in catalog.LLM_MODELS],
        "tts": [
            "cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc",
            "cartesia/sonic-3:a167e0f3-df7e-4d52-a9c3-f949145efdab",
            "cartesia/sonic-2:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc",
            "deepgram/aura-2:apollo",
            "deepgram/aura-2:athena",
            "elevenlabs/eleven_turbo_v2_5:cgSgspJ2msm6clMCkdW9",
            "inworld/inworld-tts-1:Ashley",
            "rime/arcana:luna",
            "rime/mist:luna",
        ],
    }
    for kind, texts in seeds.items():
        for text in texts:
            config.parse(kind, text)
    assert len(catalog.LLM_MODELS) >= 16
    whisper = catalog.MODELS[("stt", "cartesia/ink-whisper")]
    assert len(set(whisper.languages)) == 100 and {"hi", "fi", "yue", "haw"} <= set(
        whisper.languages
    )


# -- precedence ---------------------------------------------------------------------------------


def test_each_layer_overrides_the_ones_below(tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("STT=deepgram/nova-2:en\nTTS=local/hibari:heart\nLLM=local/echo\n")
    env = {"STT": "deepgram/nova-3:en", "LLM": "local/echo", **INF}
    s = config.Settings.from_env(env, dotenv=dotenv, cli={"language": "fr"})
    assert (s.stt, s.source("stt"), s.source("tts"), s.source("llm")) == (
        "deepgram/nova-3:en",
        "environment",
        ".env",
        "environment",
    )
    p = config.resolve(s)
    assert str(p.stt[0]) == "deepgram/nova-3:fr"  # cli LANGUAGE
    p = p.with_layer("dispatch", {"stt": "cartesia/ink-whisper:de"})
    # a descriptor with its own language, from a higher layer, beats the lower LANGUAGE
    assert (str(p.stt[0]), p.settings.source("stt"), p.settings.source("language")) == (
        "cartesia/ink-whisper:de",
        "dispatch",
        "cli",
    )
    assert "LANGUAGE=" not in config.describe(p)  # LANGUAGE=fr no longer applies
    p = p.with_layer("participant", {"language": "es"})
    assert str(p.stt[0]) == "cartesia/ink-whisper:es"
    line = config.describe(p)
    for part in (
        "STT=cartesia/ink-whisper:es [dispatch]",
        "LANGUAGE=es [participant]",
        "TTS=local/hibari:heart [.env]",
    ):
        assert part in line


def test_language_still_picks_for_a_higher_layers_descriptor_without_one():
    # `local/auto` names no language: the lower LANGUAGE still chooses its engine
    p = plan({"LANGUAGE": "de"}, dispatch={"stt": "local/auto"})
    assert (str(p.stt[0]), p.language) == ("local/whisper-base:de", "de")
    assert "LANGUAGE=de [environment]" in config.describe(p)


def test_cli_flags_are_stripped_for_livekit():
    flags, rest = config.split_cli_flags(
        ["start", "--stt", "cartesia/ink-whisper:de", "--log-level=debug", "--language=de"]
    )
    assert flags == {"stt": "cartesia/ink-whisper:de", "language": "de"}
    assert rest == ["start", "--log-level=debug"]


def test_the_worker_plan_reaches_job_processes_through_setup_fnc():
    """LiveKit pickles setup_fnc into every call's process: the worker's plan, CLI flags
    included, is bound to it, and no setting travels through the environment."""
    from agent import worker

    env = {"STT": "local/moonshine-tiny:en"}
    cli = {"stt": "local/whisper-tiny:en"}
    p = config.resolve(config.Settings.from_env(env, dotenv=False, cli=cli))
    setup = pickle.loads(pickle.dumps(worker.make_server(p).setup_fnc))
    assert setup.args == (p,)
    assert (str(setup.args[0].stt[0]), setup.args[0].settings.source("stt")) == (
        "local/whisper-tiny:en",
        "cli",
    )


def test_a_desktops_translation_language_is_not_ours():
    # Ubuntu desktops export LANGUAGE=en_US:en for gettext; it must not stop the worker
    s = config.Settings.from_env({"LANGUAGE": "en_US:en"}, dotenv=False)
    assert (s.language, s.source("language")) == ("", "default")
    config.resolve(s)
    s = config.Settings.from_env({"LANGUAGE": "de"}, dotenv=False)
    assert (s.language, s.source("language")) == ("de", "environment")


def test_describe_logs_no_secrets():
    env = {
        "STT": "cartesia/ink-whisper:en",
        "CARTESIA_API_KEY": "sk-very-secret",
        "OPENAI_API_KEY": "sk-o",
        **INF,
    }
    line = config.describe(plan(env))
    assert "CARTESIA_API_KEY=set [environment]" in line
    assert "sk-very-secret" not in line and "secret" not in line.replace("LIVEKIT_API_SECRET", "")


@pytest.mark.parametrize(
    "env, expected",
    [
        # docs/gateway.md's example: the gateway serves STT only, so LLM and TTS stay local
        (
            {"STT": "cartesia/ink-whisper:en", **INF},
            ("cartesia/ink-whisper:en", "local/echo", "local/hibari:heart"),
        ),
        # the gateway changes no default (what scripts/up.sh runs)
        ({**INF}, ("local/moonshine-tiny:en", "local/echo", "local/hibari:heart")),
        # the local voice (local/auto) follows the language of the gateway's STT
        (
            {"STT": "cartesia/ink-whisper:de", **INF},
            ("cartesia/ink-whisper:de", "local/echo", "local/espeak:de"),
        ),
        # LiveKit Cloud serves all three
        ({**CLOUD}, tuple(catalog.CLOUD_DEFAULTS[k] for k in ("stt", "llm", "tts"))),
        (
            {**INF, "LIVEKIT_INFERENCE_URL": "https://agent-gateway.livekit.cloud/v1"},
            tuple(catalog.CLOUD_DEFAULTS[k] for k in ("stt", "llm", "tts")),
        ),
    ],
)
def test_defaults_follow_what_the_inference_endpoint_serves(env, expected):
    resolved = plan(env)
    assert tuple(str(d) for d in (resolved.stt[0], resolved.llm, resolved.tts)) == expected


@pytest.mark.parametrize("kind, value", [("LLM", "openai/gpt-4.1-mini"), ("TTS", "rime/arcana")])
def test_a_cloud_llm_or_tts_through_the_gateway_is_refused_at_startup(kind, value):
    with pytest.raises(config.ConfigError) as e:
        config.resolve(settings({kind: value, **INF}))
    message = str(e.value)
    assert "\n" not in message
    assert f"{kind} (environment)={value}" in message and "serves STT only" in message
    assert f"unset {kind}" in message


def test_every_component_is_built_at_startup_and_cloud_ones_are_not_prewarmed():
    """Outside any event loop, as the worker's startup and LiveKit's prewarm run: cloud clients
    are built (their prewarm, which needs a loop, is not called) and local models load."""
    p = plan({**INF, "LIVEKIT_INFERENCE_URL": "https://agent-gateway.livekit.cloud/v1"})
    config.check_components(p)  # inference STT, LLM and TTS: must not raise
    config.prewarm(p)
    config.check_components(plan({"STT": "cartesia/ink-whisper:en", **INF}))


def test_a_component_that_cannot_be_built_is_one_line(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("voice file is damaged")

    monkeypatch.setitem(config.components.BUILDERS, ("tts", "local"), broken)
    with pytest.raises(config.ConfigError) as e:
        config.check_components(plan({}))
    assert str(e.value) == (
        "TTS=local/hibari:heart cannot be built: RuntimeError: voice file is damaged"
    )
