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

from . import capacity, config, push_to_talk, recovery, switching
from .plugins.onset_vad import OnsetVAD

INSTRUCTIONS = (
    "You are a friendly voice assistant. Answer briefly and plainly: your words are spoken, "
    "so avoid lists, markup and emoji."
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)


def prewarm(proc: JobProcess) -> None:
    """Load every model once per process (with process jobs, most are already loaded: see
    agent/preload.py)."""
    settings = config.Settings.from_env()  # includes the CLI flags (config.CLI_ENV)
    config.prewarm(settings)
    # silero decides what is speech; OnsetVAD dates its edges by the signal's energy, which a
    # turn's end (and a pause told apart from it) is timed from
    proc.userdata.update(settings=settings, vad=OnsetVAD(inference.VAD()))


async def entrypoint(ctx: JobContext) -> None:
    # the worker's settings, then the dispatch metadata, then the caller's attributes
    live = switching.LiveSTT(ctx.proc.userdata["settings"], ctx.job.metadata)
    vad = ctx.proc.userdata["vad"]
    agent = Assistant()
    session = AgentSession(
        **live.components(vad),
        vad=vad,
        **config.session_turn_options(live.settings),
    )
    # The caller hung up: end the job now rather than when the server closes the empty room
    # (~20 s later), so its MAX_CALLS slot is free for the next caller.
    session.on("close", lambda _: ctx.shutdown("the session closed"))
    await session.start(
        agent=agent,
        room=ctx.room,
        room_options=config.room_options(live.settings),
        # LiveKit's session host broadcasts every session event (each interim transcript, each
        # state change) to everyone in the room as a byte stream, for LiveKit's remote session
        # tools; the page and the callers read the transcription streams and attributes instead
        session_host=False,
    )
    await ctx.connect()
    if not ctx.is_fake_job():  # console: no room IO, so no caller attributes to follow
        live.follow(session, agent, ctx.room)  # `stt`/`language` attributes switch the STT live
    if live.settings.turn_detection == "manual":  # push-to-talk: the caller commits each turn
        if ctx.is_fake_job():
            push_to_talk.enable_console_key(session)
        else:
            await push_to_talk.enable(session, ctx.room)
    await session.generate_reply(instructions="Greet the user in one short sentence.")


def make_server(settings: config.Settings) -> AgentServer:
    config.import_plugins(settings)  # on the main thread, as LiveKit requires
    admission = capacity.Admission(settings.max_calls, settings.cpu_pressure_limit)
    server = AgentServer(
        # A process per call: a crash ends only its own call, and the calls' Python runs on
        # every core instead of sharing one interpreter lock. The models load once, in the
        # forkserver every call's process is forked from (agent/preload.py).
        job_executor_type=JobExecutorType(settings.job_executor),
        preload_modules=["agent.preload"],
        # The reported load is this worker's calls / MAX_CALLS, full at 1.0; livekit-server
        # dispatches only to a worker under its agents.target_load, which the shipped configs
        # set to 1.0 to match. Below it, a new call is turned down while this worker's threads
        # wait for a core beyond CPU_PRESSURE_LIMIT (agent/capacity.py).
        load_fnc=admission.load,
        load_threshold=1.0,
        setup_fnc=prewarm,
        port=settings.agent_http_port,
    )
    server.rtc_session(agent_name=settings.agent_name, on_request=admission.on_request(server))(
        entrypoint
    )
    server.on("worker_started", lambda: recovery.watch(server, settings))
    return server
