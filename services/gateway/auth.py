"""Cartesia's authentication and API versions, as the gateway checks them on every Cartesia route.

Credentials, the first one present wins:
  X-API-Key: <key>                      livekit-plugins-cartesia, cartesia SDK 2.x
  Authorization: Bearer <key or token>  cartesia SDK 4.x, the OpenAI SDK
  ?api_key=<key>, ?access_token=<token> websockets (browsers cannot set headers)
An access token comes from `POST /access-token` (made with the key, never with another token):
a JWT signed with a secret derived from the key, carrying its grants (`{"stt": true}`) and an
expiry of at most 3600 s. An expired token is refused with 401, one without the grant with 403.

Cartesia-Version (header, or `?cartesia_version=` on websockets) is required. Cartesia's API
reference lists it as an enum of dated versions (seed 001), so a version is a real date
YYYY-MM-DD from the first, 2024-06-10, to the newest this gateway knows (API_VERSIONS[-1]),
served as the newest version in API_VERSIONS dated on or before it (the versions the real
clients send are listed there). A missing, malformed, earlier or later value (an unknown future
version) is refused with 400.

A credential is compared as bytes: one that is not ASCII (a header is bytes, perhaps not UTF-8)
is simply a wrong credential, a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import jwt
from aiohttp import web

# dated API versions, oldest first: SDK 2.x sends 2024-11-13, livekit-plugins-cartesia and the
# OpenAI migration guide 2025-04-16, the API reference 2026-03-01, SDK 4.x 2026-08-14
API_VERSIONS = ("2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01", "2026-08-14")
GRANTS = ("stt", "tts", "agent")  # what a token may be granted (the gateway serves stt)
MAX_TOKEN_SECONDS = 3600
DEFAULT_TOKEN_SECONDS = 60


class CartesiaError(Exception):
    """A request Cartesia would refuse: HTTP status, error_code, title and message."""

    def __init__(self, status: int, code: str, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.title, self.message = status, code, title, message

    def response(self, request_id: str) -> web.Response:
        """Cartesia's HTTP error object (error_code, title, message, request_id)."""
        body = {
            "error_code": self.code,
            "title": self.title,
            "message": self.message,
            "request_id": request_id,
        }
        return web.json_response(body, status=self.status)


def api_version(request: web.Request) -> str:
    """The API version a request asked for, resolved to a known one (see the module doc)."""
    asked = request.headers.get("Cartesia-Version") or request.query.get("cartesia_version", "")
    if not asked:
        raise CartesiaError(
            400,
            "missing_version",
            "Missing Cartesia-Version",
            f"send the Cartesia-Version header, e.g. 'Cartesia-Version: {API_VERSIONS[-1]}'",
        )
    if not _is_date(asked) or not API_VERSIONS[0] <= asked <= API_VERSIONS[-1]:
        raise CartesiaError(
            400,
            "invalid_version",
            "Invalid Cartesia-Version",
            f"Cartesia-Version {asked[:20]!r} is not a date YYYY-MM-DD from "
            f"{API_VERSIONS[0]} to {API_VERSIONS[-1]}; versions: {', '.join(API_VERSIONS)}",
        )
    return max(v for v in API_VERSIONS if v <= asked)


def _is_date(text: str) -> bool:
    try:
        return len(text) == 10 and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key holder, or the bearer of an access token."""

    via: str  # "api_key" or "access_token"
    grants: tuple[str, ...]


@dataclass(frozen=True)
class Keys:
    """The gateway's Cartesia API key, and the access tokens made from it."""

    api_key: str

    @property
    def _secret(self) -> bytes:  # tokens never carry or reveal the key itself
        return hashlib.sha256(b"gateway access token:" + self.api_key.encode()).digest()

    def issue(self, grants: dict[str, bool], expires_in: int) -> str:
        now = int(time.time())
        claims = {"grants": grants, "iat": now, "exp": now + expires_in, "iss": "local-gateway"}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def authenticate(self, request: web.Request, grant: str = "stt") -> Caller:
        """The caller, or CartesiaError: 401 without a valid credential, 403 without `grant`."""
        bearer = request.headers.get("Authorization", "")
        bearer = bearer[7:].strip() if bearer[:7].lower() == "bearer " else ""
        credential = (
            request.headers.get("X-API-Key")
            or bearer
            or request.query.get("api_key")
            or request.query.get("access_token")
            or ""
        )
        if not credential:
            raise CartesiaError(
                401,
                "missing_api_key",
                "Unauthorized",
                "send your API key in the X-API-Key header or as 'Authorization: Bearer <key>' "
                "(websockets: ?api_key= or ?access_token=)",
            )
        given = credential.encode("utf-8", "surrogateescape")  # see the module doc
        if hmac.compare_digest(given, self.api_key.encode()):
            return Caller("api_key", GRANTS)
        try:
            if not given.isascii():  # a JWT is ASCII
                raise jwt.InvalidTokenError("not ASCII")
            claims = jwt.decode(given, self._secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise CartesiaError(
                401, "token_expired", "Unauthorized", "the access token has expired"
            ) from None
        except jwt.InvalidTokenError:
            raise CartesiaError(
                401, "invalid_api_key", "Unauthorized", "invalid API key or access token"
            ) from None
        granted = tuple(g for g, on in (claims.get("grants") or {}).items() if on is True)
        if grant not in granted:
            raise CartesiaError(
                403,
                "insufficient_grants",
                "Forbidden",
                f"the access token lacks the {grant!r} grant "
                f"(it has: {', '.join(granted) or 'none'})",
            )
        return Caller("access_token", granted)


def token_request(body: Any) -> tuple[dict[str, bool], int]:
    """(grants, expires_in) from an access-token request body, or CartesiaError(400)."""

    def bad(message: str) -> CartesiaError:
        return CartesiaError(400, "invalid_request", "Invalid request", message)

    if not isinstance(body, dict):
        raise bad('the body must be a JSON object, e.g. {"grants": {"stt": true}}')
    unknown = sorted(set(body) - {"grants", "expires_in"})
    if unknown:
        raise bad(f"unknown field(s): {', '.join(unknown)}; fields: grants, expires_in")
    grants = body.get("grants") or {}
    if not isinstance(grants, dict) or not all(
        g in GRANTS and isinstance(v, bool) for g, v in grants.items()
    ):
        raise bad(f"grants must map some of {', '.join(GRANTS)} to true or false")
    if not any(grants.values()):
        raise bad('grant at least one capability, e.g. {"grants": {"stt": true}}')
    expires_in = body.get("expires_in")
    if expires_in is None:
        expires_in = DEFAULT_TOKEN_SECONDS
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise bad(f"expires_in must be a whole number of seconds, not {expires_in!r}")
    if not 1 <= expires_in <= MAX_TOKEN_SECONDS:
        raise bad(f"expires_in={expires_in} is out of range [1, {MAX_TOKEN_SECONDS}] seconds")
    return grants, expires_in
