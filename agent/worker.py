"""The voice agent: one AgentSession, every choice delegated to agent/config/."""

from __future__ import annotations

import functools

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobExecutorType,
    JobProcess,
    inference,
)

from . import busy, capacity, config, lost_calls, push_to_talk, recovery, reports, switching
from .plugins.onset_vad import OnsetVAD

INSTRUCTIONS = (
    "You are a friendly voice assistant. Answer briefly and plainly: your words are spoken, "
    "so avoid lists, markup and emoji."
)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions=INSTRUCTIONS)


def prewarm(plan: config.Plan, proc: JobProcess) -> None:
    """A call's process starts: keep the worker's plan and load every model once (with process
    jobs, most are loaded already: see agent/preload.py).

    The plan comes from the worker's own process, bound to this function (make_server): LiveKit
    pickles setup_fnc into every call's process (ipc/job_proc_executor.py's ProcStartArgs). So a
    call runs on the settings its worker started with, CLI flags included, and not on `.env` as
    it is now: under `python -m agent dev` a worker still serving calls after a save keeps its
    own."""
    config.prewarm(plan)
    # silero decides what is speech; OnsetVAD dates its edges by the signal's energy, which a
    # turn's end (and a pause told apart from it) is timed from
    proc.userdata.update(plan=plan, vad=OnsetVAD(inference.VAD()))


async def entrypoint(ctx: JobContext) -> None:
    # the worker's plan, then the dispatch metadata, then the caller's attributes
    vad = ctx.proc.userdata["vad"]
    live = switching.LiveSTT(ctx.proc.userdata["plan"], ctx.job.metadata, vad)
    agent = Assistant()
    session = AgentSession(
        **config.session_components(live.plan, vad),
        vad=vad,
        **config.session_turn_options(live.plan),
    )
    # The caller hung up: end the job now rather than when the server closes the empty room
    # (~20 s later), so its MAX_CALLS slot is free for the next caller.
    session.on("close", lambda _: ctx.shutdown("the session closed"))
    reports.attach(ctx, session, live)  # the call's report when it ends (docs/calls.md)
    await session.start(
        agent=agent,
        room=ctx.room,
        room_options=config.room_options(live.plan),
        # LiveKit's session host broadcasts every session event (each interim transcript, each
        # state change) to everyone in the room as a byte stream, for LiveKit's remote session
        # tools; the page and the callers read the transcription streams and attributes instead
        session_host=False,
        record=reports.record_option(live.plan.settings),  # RECORD_CALLS: audio with the report
    )
    await ctx.connect()
    if not ctx.is_fake_job():  # console: no room IO, so no caller attributes to follow
        live.follow(session, agent, ctx.room)  # `stt`/`language` attributes switch the STT live
        lost_calls.end_when_lost(ctx)  # livekit-server went away: free the slot
    if live.plan.turn_detection == "manual":  # push-to-talk: the caller commits each turn
        if ctx.is_fake_job():
            push_to_talk.enable_console_key(session)
        else:
            await push_to_talk.enable(session, ctx.room)
    await session.generate_reply(instructions="Greet the user in one short sentence.")


def make_server(plan: config.Plan) -> AgentServer:
    settings = plan.settings
    config.import_plugins(plan)  # on the main thread, as LiveKit requires
    # beyond capacity a caller is told "busy" in the room, by this process (agent/busy.py)
    answerer = busy.Answerer(plan) if settings.busy_answer else None
    admission = capacity.Admission(settings.max_calls, settings.cpu_pressure_limit, answerer)
    server = AgentServer(
        # A process per call: a crash ends only its own call, and the calls' Python runs on
        # every core instead of sharing one interpreter lock. The models load once, in the
        # forkserver every call's process is forked from (agent/preload.py).
        job_executor_type=JobExecutorType(settings.job_executor),
        preload_modules=["agent.preload"],
        # The reported load is this worker's calls / MAX_CALLS, kept under livekit-server's
        # agents.target_load while calls beyond capacity are answered busy; whether a call is
        # served or told busy is decided at its request (agent/capacity.py).
        load_fnc=admission.load,
        load_threshold=1.0,
        setup_fnc=functools.partial(prewarm, plan),  # picklable: it crosses to each process
        port=settings.agent_http_port,
        prometheus_port=settings.prometheus_port or None,  # agent/reports.py's and LiveKit's
    )
    on_request = reports.count_refusals(admission.on_request(server))
    server.rtc_session(agent_name=settings.agent_name, on_request=on_request)(entrypoint)
    server.on("worker_started", lambda: recovery.watch(server, settings))
    if answerer:
        server.on("worker_started", answerer.prepare)
    return server
