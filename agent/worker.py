"""The voice agent: one AgentSession, every choice delegated to agent/config/."""

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

from . import config, push_to_talk, switching

INSTRUCTIONS = (
    "You are a friendly voice assistant. Answer briefly and plainly: your words are spoken, "
    "so avoid lists, markup and emoji."
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)


def prewarm(proc: JobProcess) -> None:
    """Load every model once per process; with thread jobs, once for all calls."""
    settings = config.Settings.from_env()  # includes the CLI flags (config.CLI_ENV)
    config.prewarm(settings)
    proc.userdata.update(settings=settings, vad=inference.VAD())


async def entrypoint(ctx: JobContext) -> None:
    # the worker's settings, then the dispatch metadata, then the caller's attributes
    live = switching.LiveSTT(ctx.proc.userdata["settings"], ctx.job.metadata)
    vad = ctx.proc.userdata["vad"]
    agent = Assistant()
    session = AgentSession(
        **live.components(vad),
        vad=vad,
        turn_handling=config.turn_handling(live.settings),
    )
    await session.start(agent=agent, room=ctx.room, room_options=config.room_options(live.settings))
    await ctx.connect()
    if not ctx.is_fake_job():  # console: no room IO, so no caller attributes to follow
        live.follow(session, agent, ctx.room)  # `stt`/`language` attributes switch the STT live
    if live.settings.turn_detection == "manual":  # push-to-talk: the caller commits each turn
        if ctx.is_fake_job():
            push_to_talk.enable_console_key(session)
        else:
            await push_to_talk.enable(session, ctx.room)
    await session.generate_reply(instructions="Greet the user in one short sentence.")


def share_of_calls(max_calls: int):
    """A worker's load as LiveKit weighs it: n calls running of `max_calls` is n / max_calls."""

    def load(server: AgentServer) -> float:
        return len(server.active_jobs) / max_calls

    return load


def make_server(settings: config.Settings) -> AgentServer:
    config.import_plugins(settings)  # on the main thread, as LiveKit requires
    server = AgentServer(
        # Jobs run as threads of one process so the models load once for every call: a
        # process per call would load them again and cost ~300 MB each.
        job_executor_type=JobExecutorType(settings.job_executor),
        # LiveKit's production default (0.7 of the whole machine's CPU, averaged over
        # 2.5 s) turns calls away on a 2-core machine whenever anything else runs; a call
        # refused is worse than a call slowed, so refuse only when the CPU is pegged (1.0).
        load_threshold=settings.load_threshold,
        # Workers on one machine all see the same CPU, so LiveKit cannot tell them apart by it
        # (it sends a burst of calls to one of them); with MAX_CALLS each reports its own calls.
        load_fnc=share_of_calls(settings.max_calls) if settings.max_calls else None,
        setup_fnc=prewarm,
        port=settings.agent_http_port,
    )
    server.rtc_session(agent_name=settings.agent_name)(entrypoint)
    return server
