"""The voice agent: one AgentSession, every choice delegated to agent/config.py."""

from __future__ import annotations

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobExecutorType,
    JobProcess,
    inference,
)

from . import config

INSTRUCTIONS = (
    "You are a friendly voice assistant. Answer briefly and plainly: your words are spoken, "
    "so avoid lists, markup and emoji."
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)


def prewarm(proc: JobProcess) -> None:
    """Load every model once per process; with thread jobs, once for all calls."""
    settings = config.Settings.from_env()
    resolved = config.resolve(settings)
    components = {kind: config.build(desc, settings) for kind, desc in resolved.items()}
    for component in components.values():
        if hasattr(component, "prewarm") and not isinstance(component, str):
            component.prewarm()
    proc.userdata.update(settings=settings, resolved=resolved, vad=inference.VAD())


async def entrypoint(ctx: JobContext) -> None:
    settings: config.Settings = ctx.proc.userdata["settings"]
    resolved = ctx.proc.userdata["resolved"]
    session = AgentSession(
        stt=config.build(resolved["stt"], settings),
        llm=config.build(resolved["llm"], settings),
        tts=config.build(resolved["tts"], settings),
        vad=ctx.proc.userdata["vad"],
        turn_handling=config.turn_handling(settings),
    )
    await session.start(agent=Assistant(), room=ctx.room)
    await ctx.connect()
    await session.generate_reply(instructions="Greet the user in one short sentence.")


def make_server(settings: config.Settings) -> AgentServer:
    server = AgentServer(
        # Jobs run as threads of one process so the models load once for every call: a
        # process per call would load them again and cost ~300 MB each.
        job_executor_type=JobExecutorType(settings.job_executor),
        # LiveKit's production default (0.7 of the CPU) turns calls away on a 2-core
        # machine that still has room; refuse only when it is saturated.
        load_threshold=settings.load_threshold,
        setup_fnc=prewarm,
        port=settings.agent_http_port,
    )
    server.rtc_session(agent_name=settings.agent_name)(entrypoint)
    return server
