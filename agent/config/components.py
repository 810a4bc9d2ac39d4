"""Building what an AgentSession takes from validated descriptors.

Each catalog row names how it is reached (its route) and, for local engines and provider
plugins, the plugin class that builds it: one builder per (kind, route), and no builder ever
names a provider.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

from .. import catalog
from ..catalog import Kind, Plugin
from ..errors import ConfigError
from .descriptors import Descriptor, call_language, candidates, own_key, resolve, stt_chain
from .settings import LAYERS, TURN_KEYS, Settings

logger = logging.getLogger("agent.config")
VARIANT_ARGUMENT = {"stt": "language", "tts": "voice", "llm": None}  # how a plugin takes it


def plugin_class(plugin: Plugin):
    """The class a catalog Plugin names, imported now."""
    module, name = plugin.target.split(":")
    return getattr(importlib.import_module(module), name)


def _local(desc: Descriptor, settings: Settings):
    argument = VARIANT_ARGUMENT[desc.kind]
    kwargs = {argument: desc.variant} if argument else {}
    if desc.model.plugin.takes_language:
        kwargs["language"] = call_language(settings)
    if desc.model.plugin.detects_language and desc.variant == catalog.MULTI:
        kwargs["languages"] = candidates(settings)
    return plugin_class(desc.model.plugin)(**kwargs)


def _own_key_plugin(desc: Descriptor, settings: Settings):
    """The provider's own LiveKit plugin with the user's key (never its silent defaults: the
    model is always passed, e.g. ink-whisper rather than the Cartesia plugin's ink-2)."""
    plugin = desc.model.plugin
    base_url = getattr(settings, plugin.base_url) if plugin.base_url else ""
    return plugin_class(plugin)(
        model=desc.model.name,
        **{VARIANT_ARGUMENT[desc.kind]: desc.variant},
        api_key=own_key(settings, desc),
        **({"base_url": base_url} if base_url else {}),
        # the options check_options let through are plugin arguments (catalog Plugin.options)
        **(dict(settings.stt_options) if desc.kind == "stt" else {}),
    )


def _inference_stt(desc: Descriptor, settings: Settings, instance: bool = False):
    """The descriptor string when it says it all (LiveKit builds the client from it), else an
    inference.STT; with the user's own provider key set, the provider's plugin."""
    from livekit.agents import inference

    if own_key(settings, desc):
        return _own_key_plugin(desc, settings)
    if not (instance or settings.stt_options or settings.livekit_inference_url):
        return str(desc)  # exactly the descriptor LiveKit's docs show
    return inference.STT(
        model=desc.model.id,
        language=desc.variant,
        extra_kwargs=dict(settings.stt_options),
        **_inference_access(settings),
    )


def _inference_access(settings: Settings) -> dict[str, str]:
    """Where LiveKit Inference is and the key pair that signs its tokens (from the settings,
    whichever layer set them, not only the environment LiveKit's clients read)."""
    return {
        "base_url": settings.inference_url,
        "api_key": settings.livekit_api_key,
        "api_secret": settings.livekit_api_secret.get_secret_value(),
    }


def _openai_llm(desc: Descriptor, settings: Settings):
    plugin = catalog.OPENAI_COMPATIBLE_PLUGIN
    base_url = getattr(settings, plugin.base_url) or catalog.OPENAI_COMPATIBLE_SERVERS[desc.server]
    return plugin_class(plugin)(model=desc.model.name, base_url=base_url, api_key="local")


def _inference_llm(desc: Descriptor, settings: Settings):
    from livekit.agents import inference

    if not settings.livekit_inference_url:
        return str(desc)
    return inference.LLM(model=desc.model.id, **_inference_access(settings))


def _realtime_llm(desc: Descriptor, settings: Settings):
    return plugin_class(desc.model.plugin)(voice=desc.variant, api_key=own_key(settings, desc))


def _inference_tts(desc: Descriptor, settings: Settings):
    from livekit.agents import inference

    if not settings.livekit_inference_url:
        return str(desc)
    return inference.TTS(model=desc.model.id, voice=desc.variant, **_inference_access(settings))


BUILDERS = {
    ("stt", "local"): _local,
    ("stt", "inference"): _inference_stt,
    ("llm", "local"): _local,
    ("llm", "openai"): _openai_llm,
    ("llm", "inference"): _inference_llm,
    ("llm", "realtime"): _realtime_llm,
    ("tts", "local"): _local,
    ("tts", "inference"): _inference_tts,
}


def build(desc: Descriptor, settings: Settings):
    """The STT/LLM/TTS object (or LiveKit descriptor string) an AgentSession takes."""
    return BUILDERS[(desc.kind, desc.model.route)](desc, settings)


def build_stt(settings: Settings, vad=None):
    """The session's STT: STT alone, or with STT_FALLBACK a FallbackSTT over the chain (`vad`
    segments audio for members that cannot stream)."""
    chain = stt_chain(settings)
    if len(chain) == 1:
        return build(chain[0], settings)
    from livekit.agents import inference

    from ..fallback import FallbackSTT

    def member(desc: Descriptor, settings: Settings):
        if desc.model.route == "inference":  # the adapter needs objects, not strings
            return _inference_stt(desc, settings, instance=True)
        return build(desc, settings)

    bare = settings.model_copy(update={"stt_options": {}})  # options belong to the primary
    members = [member(chain[0], settings), *(member(d, bare) for d in chain[1:])]
    return FallbackSTT(members, vad=vad or inference.VAD())  # the VAD runs locally


def plugin_modules(settings: Settings) -> set[str]:
    """The LiveKit plugin modules these settings (or a live switch) may build: a provider
    plugin whose own key is set, the realtime model or OpenAI-compatible server chosen."""
    llm = resolve(settings)["llm"]
    models = [m for m in catalog.MODELS.values() if m.route != "local" and m.plugin_key]
    plugins = [
        m.plugin for m in models if getattr(settings, m.plugin_key.lower()).get_secret_value()
    ]
    if llm.realtime:
        plugins.append(llm.model.plugin)
    if llm.model.route == "openai":
        plugins.append(catalog.OPENAI_COMPATIBLE_PLUGIN)
    modules = {p.target.split(":")[0] for p in plugins}
    if settings.turn_detection == "multilingual":
        modules.add("livekit.plugins.turn_detector")
    if settings.noise_cancellation:
        modules.add("livekit.plugins.noise_cancellation")
    return modules


def import_plugins(settings: Settings) -> None:
    """Import the plugins these settings may build. LiveKit plugins register on import, which
    LiveKit allows only on the main thread: not in a thread job's prewarm."""
    for module in sorted(plugin_modules(settings)):
        importlib.import_module(module)


def prewarm(settings: Settings, forking: bool = False) -> None:
    """Load the local models the settings name (each STT of the chain too), once per process.
    Cloud components have no model to load (and their own prewarm needs a running event loop).

    `forking`: this process will fork the calls' processes (agent/preload.py), so load only
    the engines that still work in a forked child (their plugin's `fork_safe`); the others
    load in each call's process.
    """
    resolved = resolve(settings)
    descs = [*stt_chain(settings), resolved["llm"], resolved["tts"]]
    for desc in descs:
        if desc.model.route == "local":
            component = build(desc, settings)
            if hasattr(component, "prewarm") and (
                not forking or getattr(component, "fork_safe", False)
            ):
                component.prewarm()
    if turn_mode(settings).turn_detection == "smart-turn":
        from ..plugins.smart_turn import load

        load()


def check_components(settings: Settings) -> None:
    """Build every component once, at startup (on the main thread, after import_plugins): one
    that cannot be built stops the worker here with one line, instead of failing every call of a
    worker that registered. With thread jobs the local models load here too: the jobs share this
    process, so a model that cannot load also stops the worker before it registers."""
    resolved = resolve(settings)
    for kind, desc in resolved.items():
        if resolved["llm"].realtime and kind != "llm":
            continue  # a realtime model hears and speaks by itself
        try:
            build_stt(settings) if kind == "stt" else build(desc, settings)
        except ConfigError:
            raise
        except Exception as e:  # a plugin's own check, worded by the plugin
            raise ConfigError(
                f"{settings.label(kind)}={desc} cannot be built: {type(e).__name__}: {e}"
            ) from None
    if turn_mode(settings).turn_detection == "smart-turn":  # its model file is there
        _smart_turn_detector(settings)
    if settings.job_executor == "thread":
        prewarm(settings)


def session_components(settings: Settings, resolved: dict[Kind, Descriptor], vad=None) -> dict:
    """AgentSession's stt/llm/tts arguments; a realtime LLM hears and speaks by itself."""
    llm = build(resolved["llm"], settings)
    if resolved["llm"].realtime:
        return {"llm": llm}
    return {"stt": build_stt(settings, vad), "llm": llm, "tts": build(resolved["tts"], settings)}


def _eot_detector(settings: Settings):
    from livekit.agents import inference

    # the audio end-of-turn model embedded in livekit-local-inference; left to itself LiveKit
    # would pick its cloud version ("v1") in dev/console mode
    return inference.TurnDetector(version="v1-mini")


def _multilingual_detector(settings: Settings):
    from livekit.plugins.turn_detector.multilingual import MultilingualModel

    return MultilingualModel()


def _smart_turn_detector(settings: Settings):
    from ..plugins.smart_turn import SmartTurnDetector

    return SmartTurnDetector()


# TURN_DETECTION -> what LiveKit's turn_handling["turn_detection"] gets (a mode, or a builder)
TURN_DETECTORS = {
    "eot": _eot_detector,
    "smart-turn": _smart_turn_detector,  # pipecat's Smart Turn v3.2 (agent/plugins/smart_turn.py)
    "multilingual": _multilingual_detector,
    "vad": "vad",  # silence alone: MIN_ENDPOINTING_DELAY after the VAD's end of speech
    "stt": "stt",  # the STT's own end of speech (Moonshine's line end, a provider's endpointing)
    "manual": "manual",  # push-to-talk: agent/push_to_talk.py commits the turn
}
_fallbacks_logged: set[tuple[str, str]] = set()


def turn_mode(settings: Settings) -> Settings:
    """The settings with the turn detection this call uses: TURN_DETECTION=auto picks the
    measured default for the call's language (catalog.TURN_DETECTION_BY_LANGUAGE); a detector
    that does not speak the call's language (catalog.TURN_DETECTOR_LANGUAGES) gives way to
    catalog.TURN_DETECTION_FALLBACK, said once per process and language."""
    mode, language = settings.turn_detection, call_language(settings).split("-")[0]
    if mode == "auto":
        mode = catalog.TURN_DETECTION_BY_LANGUAGE.get(language, catalog.TURN_DETECTION_DEFAULT)
    speaks = catalog.TURN_DETECTOR_LANGUAGES.get(mode)
    if speaks is not None and language not in speaks:
        if (mode, language) not in _fallbacks_logged:
            _fallbacks_logged.add((mode, language))
            logger.info(
                "TURN_DETECTION=%s does not speak %r: this call ends turns with %s",
                mode,
                language,
                catalog.TURN_DETECTION_FALLBACK,
            )
        mode = catalog.TURN_DETECTION_FALLBACK
    if mode == settings.turn_detection:
        return settings
    resolved = settings.model_copy(update={"turn_detection": mode})
    resolved._sources = dict(settings._sources)
    return resolved


def turn_handling(settings: Settings) -> dict[str, Any]:
    """AgentSession's `turn_handling`: end of turn, endpointing delays, interruptions and
    preemptive generation, from the TURN_KEYS settings. Nothing here calls the cloud:
    interruption is VAD-based (LiveKit's adaptive mode is a cloud model)."""
    settings = turn_mode(settings)
    detector = TURN_DETECTORS[settings.turn_detection]
    return {
        "turn_detection": detector(settings) if callable(detector) else detector,
        "endpointing": dict(zip(("min_delay", "max_delay"), settings.endpointing, strict=True)),
        "interruption": {
            "enabled": settings.allow_interruptions,
            "mode": "vad",
            "min_duration": settings.min_interruption_duration,
            "min_words": settings.min_interruption_words,
            "resume_false_interruption": settings.resume_false_interruption,
            "false_interruption_timeout": settings.false_interruption_timeout,
            # LiveKit would feed the STT silence while a reply that may not be interrupted
            # plays: the caller's words then are lost, not answered after it
            "discard_audio_if_uninterruptible": False,
        },
        "preemptive_generation": {
            "enabled": settings.preemptive_generation,
            "preemptive_tts": settings.preemptive_tts,
        },
    }


def session_turn_options(settings: Settings) -> dict[str, Any]:
    """AgentSession's turn arguments: `turn_handling`, and the AEC warm-up (0: none, so that
    what the caller says over the greeting reaches the STT)."""
    return {
        "turn_handling": turn_handling(settings),
        "aec_warmup_duration": settings.aec_warmup_duration or None,
    }


# NOISE_CANCELLATION -> the filter of livekit-plugins-noise-cancellation (LiveKit Cloud only)
NOISE_FILTERS = {"bvc": "BVC", "bvc-telephony": "BVCTelephony", "nc": "NC"}


INPUT_FRAME_MS = 40


def room_options(settings: Settings):
    """AgentSession.start's `room_options`: the caller's audio in 40 ms frames (LiveKit reads
    50 ms by default, which the end of every turn waits for; 20 ms cost a call 0.35 cores
    instead of 0.30 on a slow machine, at the same latency), noise cancellation if chosen.
    Without it, the audio comes at 16 kHz, the rate every local model listens at (VAD, end of
    turn, STT), rather than LiveKit's 24 kHz that each of them would resample on its own.

    No automatic gain control: a browser's microphone already has it (getUserMedia's default,
    which LiveKit's client SDKs keep), and LiveKit's second pass costs a synchronous native
    call per frame on the call's event loop."""
    from livekit.agents import room_io

    audio = room_io.AudioInputOptions(frame_size_ms=INPUT_FRAME_MS, auto_gain_control=False)
    if not settings.noise_cancellation:
        audio.sample_rate = 16000
    else:
        plugin = importlib.import_module("livekit.plugins.noise_cancellation")
        audio.noise_cancellation = getattr(plugin, NOISE_FILTERS[settings.noise_cancellation])()
    return room_io.RoomOptions(audio_input=audio)


def describe(settings: Settings, resolved: dict[Kind, Descriptor]) -> str:
    """One log line: what the session will use and which layer set each value (no secrets)."""
    origin = "embedded local defaults" if settings.uses_local_defaults() else "configured"
    parts = [f"{k.upper()}={d} [{settings.source(k)}]" for k, d in resolved.items()]
    shown = {
        "language": settings.language,
        "languages": settings.languages,
        "stt_fallback": settings.stt_fallback,
        "stt_options": json.dumps(settings.stt_options, sort_keys=True)
        if settings.stt_options
        else "",
        "livekit_inference_url": settings.livekit_inference_url,
        # the addresses provider plugins are pointed at (e.g. CARTESIA_BASE_URL)
        **{
            m.plugin.base_url: getattr(settings, m.plugin.base_url)
            for m in catalog.MODELS.values()
            if m.plugin and m.plugin.base_url
        },
    }
    parts += [f"{k.upper()}={v} [{settings.source(k)}]" for k, v in shown.items() if v]
    turns = [k for k in (*TURN_KEYS, "noise_cancellation") if settings.source(k) != "default"]

    def turn_part(k: str) -> str:
        value = getattr(settings, k)
        if k == "turn_detection" and (runs := turn_mode(settings).turn_detection) != value:
            value = f"{value} ({runs})"  # auto, or a fallback: what this call runs
        return f"{k.upper()}={value} [{settings.source(k)}]"

    parts += [turn_part(k) for k in dict.fromkeys(["turn_detection", *turns])]
    parts += [
        f"{key}=set [{settings.source(key.lower())}]"
        for key in sorted({d.model.plugin_key for d in resolved.values() if d.model.plugin_key})
        if getattr(settings, key.lower()).get_secret_value()
    ]
    return f"session ({origin}): " + " ".join(parts) + f" (precedence: {' < '.join(LAYERS)})"
