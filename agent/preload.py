"""Imported once by the forkserver that forks every call's process (JOB_EXECUTOR=process).

The models load here, before any fork, so each call's process starts with them already in
memory, shared copy-on-write with every other call: a call costs its own process (its own
interpreter, so both cores work and a crash ends only that call) but not another copy of the
models. Engines that do not survive a fork (CTranslate2) load in the call's process instead.

Python's forkserver is started with nothing but the names of the modules to import (LiveKit's
`preload_modules`) and the environment it inherits: no object of the worker reaches it. So it
resolves the settings of `.env` and the environment as the worker did, without the worker's
CLI flags (--stt, ...). A call's process gets the worker's own plan, flags included, through
setup_fnc (agent/worker.py's prewarm), which loads whatever a flag changed.
"""

import logging

# agent.worker as well: a call's process then runs the entrypoint as it was when this worker
# started, not as it is on disk now: under `python -m agent dev` (agent/reload.py) a worker that
# still serves calls after a save must not run the saved code, broken or not.
from . import config, worker  # noqa: F401

try:
    config.prewarm(config.resolve(config.Settings.from_env()), forking=True)
except Exception:  # the call's own prewarm loads them again and reports the error properly
    logging.getLogger("agent.preload").exception("could not preload the models")
