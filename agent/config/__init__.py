"""The typed config layer: settings in, the objects an AgentSession takes out.

- settings.py     where each value comes from (default < .env < environment < cli < dispatch
                  < participant) and the worker options
- descriptors.py  `provider/model[:variant]` checked against agent/catalog.py
- plan.py         the settings resolved once (`resolve`): the immutable Plan every consumer
                  reads (the STT chain, the call language, LLM, voice, turn mode)
- components.py   the STT/LLM/TTS (and turn handling) built from a Plan
"""

from ..errors import ConfigError
from .components import (
    build,
    build_stt,
    check_components,
    describe,
    import_plugins,
    plugin_class,
    prewarm,
    room_options,
    session_components,
    session_turn_options,
    turn_handling,
)
from .descriptors import (
    Descriptor,
    check_options,
    check_package,
    install_hint,
    own_key,
    parse,
)
from .plan import Plan, resolve
from .settings import (
    CLI_FLAGS,
    ENDPOINTING_DEFAULTS,
    LAYER_KEYS,
    LAYERS,
    TURN_KEYS,
    Settings,
    split_cli_flags,
)

__all__ = [
    "CLI_FLAGS",
    "ENDPOINTING_DEFAULTS",
    "LAYERS",
    "LAYER_KEYS",
    "TURN_KEYS",
    "ConfigError",
    "Descriptor",
    "Plan",
    "Settings",
    "build",
    "build_stt",
    "check_components",
    "check_options",
    "check_package",
    "describe",
    "import_plugins",
    "install_hint",
    "own_key",
    "parse",
    "plugin_class",
    "prewarm",
    "resolve",
    "room_options",
    "session_components",
    "session_turn_options",
    "split_cli_flags",
    "turn_handling",
]
