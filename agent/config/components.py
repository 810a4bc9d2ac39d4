"""Building what an AgentSession takes from a resolved Plan (agent/config/plan.py).

Each catalog row names how it is reached (its route) and, for local engines and provider
plugins, the plugin class that builds it: one builder per (kind, route), and no builder ever
names a provider. Builders read the plan (the call's language, a `multi` call's candidates,
keys and addresses from its settings) and derive nothing again.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any

from .. import catalog
from ..catalog import Plugin
from ..errors import ConfigError
from .descriptors import Descriptor, own_key
from .plan import Plan, language_applies
from .settings import LAYERS, TURN_KEYS, Settings

VARIANT_ARGUMENT = {"stt": "language", "tts": "voice", "llm": None}  # how a plugin takes it


def plugin_class(plugin: Plugin):
    """The class a catalog Plugin names, imported now."""
    module, name = plugin.target.split(":")
    return getattr(importlib.import_module(module), name)


def _local(desc: Descriptor, plan: Plan | None):
    argument = VARIANT_ARGUMENT[desc.kind]
    kwargs = {argument: desc.variant} if argument else {}
    if desc.model.plugin.takes_language:
        kwargs["language"] = plan.language if plan else desc.variant
    if desc.model.plugin.detects_language and desc.variant == catalog.MULTI:
        kwargs["languages"] = plan.languages if plan else ()
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


def _inference_stt(desc: Descriptor, plan: Plan, instance: bool = False):
    """The descriptor string when it says it all (LiveKit builds the client from it), else an
    inference.STT; with the user's own provider key set, the provider's plugin."""
    from livekit.agents import inference

    settings = plan.settings
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


def _openai_llm(desc: Descriptor, plan: Plan):
    plugin = catalog.OPENAI_COMPATIBLE_PLUGIN
    base_url = (
        getattr(plan.settings, plugin.base_url) or catalog.OPENAI_COMPATIBLE_SERVERS[desc.server]
    )
    return plugin_class(plugin)(model=desc.model.name, base_url=base_url, api_key="local")


def _inference_llm(desc: Descriptor, plan: Plan):
    from livekit.agents import inference

    if not plan.settings.livekit_inference_url:
        return str(desc)
    return inference.LLM(model=desc.model.id, **_inference_access(plan.settings))


def _realtime_llm(desc: Descriptor, plan: Plan):
    key = own_key(plan.settings, desc)
    return plugin_class(desc.model.plugin)(voice=desc.variant, api_key=key)


def _inference_tts(desc: Descriptor, plan: Plan):
    from livekit.agents import inference

    if not plan.settings.livekit_inference_url:
        return str(desc)
    access = _inference_access(plan.settings)
    return inference.TTS(model=desc.model.id, voice=desc.variant, **access)


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


def build(desc: Descriptor, plan: Plan | None = None):
    """The STT/LLM/TTS object (or LiveKit descriptor string) an AgentSession takes. Without a
    plan, a local engine on its own (a tool's): it speaks its descriptor's language."""
    return BUILDERS[(desc.kind, desc.model.route)](desc, plan)


def build_stt(plan: Plan, vad=None):
    """The session's STT: STT alone, or with STT_FALLBACK a FallbackSTT over the chain (`vad`
    segments audio for members that cannot stream)."""
    if len(plan.stt) == 1:
        return build(plan.stt[0], plan)
    from livekit.agents import inference

    from ..fallback import FallbackSTT

    def member(desc: Descriptor, plan: Plan):
        if desc.model.route == "inference":  # the adapter needs objects, not strings
            return _inference_stt(desc, plan, instance=True)
        return build(desc, plan)

    # STT_OPTIONS belong to the primary
    bare = dataclasses.replace(plan, settings=plan.settings.model_copy(update={"stt_options": {}}))
    members = [member(plan.stt[0], plan), *(member(d, bare) for d in plan.stt[1:])]
    return FallbackSTT(members, vad=vad or inference.VAD())  # the VAD runs locally


def plugin_modules(plan: Plan) -> set[str]:
    """The LiveKit plugin modules a plan (or a live switch) may build: a provider plugin whose
    own key is set, the realtime model or OpenAI-compatible server chosen."""
    settings, llm = plan.settings, plan.llm
    models = [m for m in catalog.MODELS.values() if m.route != "local" and m.plugin_key]
    plugins = [
        m.plugin for m in models if getattr(settings, m.plugin_key.lower()).get_secret_value()
    ]
    if llm.realtime:
        plugins.append(llm.model.plugin)
    if llm.model.route == "openai":
        plugins.append(catalog.OPENAI_COMPATIBLE_PLUGIN)
    modules = {p.target.split(":")[0] for p in plugins}
    if plan.turn_detection == "multilingual":
        modules.add("livekit.plugins.turn_detector")
    if settings.noise_cancellation:
        modules.add("livekit.plugins.noise_cancellation")
    return modules


def import_plugins(plan: Plan) -> None:
    """Import the plugins a plan may build. LiveKit plugins register on import, which LiveKit
    allows only on the main thread: not in a thread job's prewarm."""
    for module in sorted(plugin_modules(plan)):
        importlib.import_module(module)


def prewarm(plan: Plan, forking: bool = False) -> None:
    """Load the local models the plan names (each STT of the chain too), once per process.
    Cloud components have no model to load (and their own prewarm needs a running event loop).

    `forking`: this process will fork the calls' processes (agent/preload.py), so load only
    the engines that still work in a forked child (their plugin's `fork_safe`); the others
    load in each call's process.
    """
    for desc in (*plan.stt, plan.llm, plan.tts):
        if desc.model.route == "local":
            component = build(desc, plan)
            if hasattr(component, "prewarm") and (
                not forking or getattr(component, "fork_safe", False)
            ):
                component.prewarm()
    if plan.turn_detection == "smart-turn":
        from ..plugins.smart_turn import load

        load()


def check_components(plan: Plan) -> None:
    """Build every component once, at startup (on the main thread, after import_plugins): one
    that cannot be built stops the worker here with one line, instead of failing every call of a
    worker that registered. With thread jobs the local models load here too: the jobs share this
    process, so a model that cannot load also stops the worker before it registers."""
    for kind, desc in plan.components.items():
        if plan.llm.realtime and kind != "llm":
            continue  # a realtime model hears and speaks by itself
        try:
            build_stt(plan) if kind == "stt" else build(desc, plan)
        except ConfigError:
            raise
        except Exception as e:  # a plugin's own check, worded by the plugin
            raise ConfigError(
                f"{plan.settings.label(kind)}={desc} cannot be built: {type(e).__name__}: {e}"
            ) from None
    if plan.turn_detection == "smart-turn":  # its model file is there
        _smart_turn_detector()
    if plan.settings.job_executor == "thread":
        prewarm(plan)


def session_components(plan: Plan, vad=None) -> dict:
    """AgentSession's stt/llm/tts arguments; a realtime LLM hears and speaks by itself."""
    llm = build(plan.llm, plan)
    if plan.llm.realtime:
        return {"llm": llm}
    return {"stt": build_stt(plan, vad), "llm": llm, "tts": build(plan.tts, plan)}


def _eot_detector():
    from livekit.agents import inference

    # the audio end-of-turn model embedded in livekit-local-inference; left to itself LiveKit
    # would pick its cloud version ("v1") in dev/console mode
    return inference.TurnDetector(version="v1-mini")


def _multilingual_detector():
    from livekit.plugins.turn_detector.multilingual import MultilingualModel

    return MultilingualModel()


def _smart_turn_detector():
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


def turn_handling(plan: Plan) -> dict[str, Any]:
    """AgentSession's `turn_handling`: end of turn, endpointing delays, interruptions and
    preemptive generation, from the plan's turn mode and TURN_KEYS settings. Nothing here calls
    the cloud: interruption is VAD-based (LiveKit's adaptive mode is a cloud model)."""
    settings, detector = plan.settings, TURN_DETECTORS[plan.turn_detection]
    return {
        "turn_detection": detector() if callable(detector) else detector,
        "endpointing": dict(zip(("min_delay", "max_delay"), plan.endpointing, strict=True)),
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


def session_turn_options(plan: Plan) -> dict[str, Any]:
    """AgentSession's turn arguments: `turn_handling`, and the AEC warm-up (0: none, so that
    what the caller says over the greeting reaches the STT)."""
    return {
        "turn_handling": turn_handling(plan),
        "aec_warmup_duration": plan.settings.aec_warmup_duration or None,
    }


# NOISE_CANCELLATION -> the filter of livekit-plugins-noise-cancellation (LiveKit Cloud only)
NOISE_FILTERS = {"bvc": "BVC", "bvc-telephony": "BVCTelephony", "nc": "NC"}


INPUT_FRAME_MS = 40


def room_options(plan: Plan):
    """AgentSession.start's `room_options`: the caller's audio in 40 ms frames (LiveKit reads
    50 ms by default, which the end of every turn waits for; 20 ms cost a call 0.35 cores
    instead of 0.30 on a slow machine, at the same latency), noise cancellation if chosen.
    Without it, the audio comes at 16 kHz, the rate every local model listens at (VAD, end of
    turn, STT), rather than LiveKit's 24 kHz that each of them would resample on its own.

    No automatic gain control: a browser's microphone already has it (getUserMedia's default,
    which LiveKit's client SDKs keep), and LiveKit's second pass costs a synchronous native
    call per frame on the call's event loop."""
    from livekit.agents import room_io

    settings = plan.settings
    audio = room_io.AudioInputOptions(frame_size_ms=INPUT_FRAME_MS, auto_gain_control=False)
    if not settings.noise_cancellation:
        audio.sample_rate = 16000
    else:
        plugin = importlib.import_module("livekit.plugins.noise_cancellation")
        audio.noise_cancellation = getattr(plugin, NOISE_FILTERS[settings.noise_cancellation])()
    return room_io.RoomOptions(audio_input=audio)


def describe(plan: Plan) -> str:
    """One log line: what the session will use and which layer set each value (no secrets)."""
    settings, resolved = plan.settings, plan.components
    origin = "embedded local defaults" if settings.uses_local_defaults() else "configured"
    parts = [f"{k.upper()}={d} [{settings.source(k)}]" for k, d in resolved.items()]
    shown = {
        "language": settings.language if language_applies(settings) else "",
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
        if k == "turn_detection" and (runs := plan.turn_detection) != value:
            value = f"{value} ({runs})"  # auto, or a fallback: what this call runs
        return f"{k.upper()}={value} [{settings.source(k)}]"

    parts += [turn_part(k) for k in dict.fromkeys(["turn_detection", *turns])]
    parts += [
        f"{key}=set [{settings.source(key.lower())}]"
        for key in sorted({d.model.plugin_key for d in resolved.values() if d.model.plugin_key})
        if getattr(settings, key.lower()).get_secret_value()
    ]
    return f"session ({origin}): " + " ".join(parts) + f" (precedence: {' < '.join(LAYERS)})"
