"""The gateway's state: its keys and limits, and what the recent sessions asked for and got,
kept for `GET /sessions` (which needs the Cartesia key: callers' words are in it)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .engine import Transcript
from .limits import BatchSlots, Limits

logger = logging.getLogger("gateway")
# the sessions /sessions lists: a gateway that runs for weeks must not keep every one
HISTORY = 1000


@dataclass
class SessionRecord:
    id: str
    route: str  # "inference" or "cartesia"
    model: str = ""
    language: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # after session.update
    sample_rate: int | None = None
    encoding: str | None = None
    # LiveKit Inference: the access token's identity; Cartesia: api_key or access_token
    subject: str | None = None
    api_version: str | None = None  # Cartesia-Version, resolved (gateway/auth.py)
    fallback: list[str] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    audio_seconds: float = 0.0
    interims: int = 0
    finals: list[str] = field(default_factory=list)
    finalized: bool = False
    closed: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Gateway:
    api_key: str
    api_secret: str
    cartesia_key: str
    limits: Limits = field(default_factory=Limits)
    sessions: deque[SessionRecord] = field(default_factory=lambda: deque(maxlen=HISTORY))
    batch: BatchSlots = field(init=False)

    def __post_init__(self) -> None:
        self.batch = BatchSlots(self.limits.batch_concurrency, self.limits.batch_queue)

    def new_record(self, route: str, request_id: str, **values: Any) -> SessionRecord:
        record = SessionRecord(request_id, route, **values)
        self.sessions.append(record)
        return record

    @staticmethod
    def closed(record: SessionRecord) -> None:
        record.closed = True
        logger.info(
            "%s session %s: %s:%s options=%s, %.1f s of audio, %d finals%s",
            record.route,
            record.id,
            record.model,
            record.language,
            json.dumps(record.options),
            record.audio_seconds,
            len(record.finals),
            f", refused: {record.error}" if record.error else "",
        )

    @staticmethod
    def note(record: SessionRecord, t: Transcript) -> None:
        if t.is_final:
            record.finals.append(t.text)
        else:
            record.interims += 1


GATEWAY = web.AppKey("gateway", Gateway)
