"""The typed config layer: settings in, the objects an AgentSession takes out.

- settings.py     where each value comes from (default < .env < environment < cli < dispatch
                  < participant) and the worker options
- descriptors.py  `provider/model[:variant]` checked against agent/catalog.py
- components.py   the STT/LLM/TTS (and turn handling) built from the catalog's rows
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
    turn_mode,
)
from .descriptors import (
    Descriptor,
    call_language,
    check_options,
    check_package,
    check_turns,
    install_hint,
    own_key,
    parse,
    resolve,
    stt_chain,
    with_language,
)
from .settings import (
    CLI_ENV,
    CLI_FLAGS,
    ENDPOINTING_DEFAULTS,
    LAYER_KEYS,
    LAYERS,
    TURN_KEYS,
    Settings,
    split_cli_flags,
)

__all__ = [
    "CLI_ENV",
    "CLI_FLAGS",
    "ENDPOINTING_DEFAULTS",
    "LAYERS",
    "LAYER_KEYS",
    "TURN_KEYS",
    "ConfigError",
    "Descriptor",
    "Settings",
    "build",
    "build_stt",
    "call_language",
    "check_components",
    "check_options",
    "check_package",
    "check_turns",
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
    "stt_chain",
    "turn_handling",
    "turn_mode",
    "with_language",
]
