"""The browser page and the token endpoint it joins the agent's room with.

`python -m agent web [--host 127.0.0.1] [--port 8000]` serves, on one origin:

  GET  /              the page (web/dist, built by `npm run build` in web/)
  GET  /api/catalog   the STT models and languages the page's pickers offer (agent/catalog.py)
  POST /api/token     LiveKit's standard token-endpoint shape: JSON with optional
                      participant_name, participant_metadata, participant_attributes,
                      room_config (and, with the operator grant, room_name and
                      participant_identity) -> {server_url, participant_token}
  GET  /api/calls                 the recent calls' summaries (agent/reports.py, docs/calls.md)
  GET  /api/calls/<room>          one call's report
  GET  /api/calls/<room>/audio    its recording (audio/ogg), when it was recorded

Calls belong to their callers. As in LiveKit's own starters, the server chooses the room (a new,
unguessable name per token) and the identity; a client may only suggest its display name. So a
token never lets anyone into a call that is not theirs: naming an existing room, or an identity
(another caller's, the agent's), needs the operator grant, `Authorization: Bearer
<TOKEN_ENDPOINT_SECRET>`, for an operator or a second participant the operator invites. Without
TOKEN_ENDPOINT_SECRET there is no such grant, and `room_name` or `participant_identity` is
refused with 403.

What a token allows: joining that one room for 10 minutes, publishing the microphone and
data, subscribing, and setting its own attributes (the page's language and STT pickers set
`language` and `stt`). Nothing else: no room creation, listing or admin. The room
configuration in it is the server's: it dispatches this project's agent (AGENT_NAME). A client
`room_config` is only accepted when it asks for that same agent and nothing more, so a caller
cannot dispatch other agents or change the room's settings.

Who may ask for one: by default the server binds to loopback and needs no credential (dev
mode). It refuses to bind elsewhere unless TOKEN_ENDPOINT_SECRET is set; then /api/token
requires `Authorization: Bearer <secret>`. The page sends the key given in its URL fragment
(`http://host:8000/#key=<secret>`, never sent to the server in the URL) or typed in when asked.
A request that carries an Origin (every browser POST does) is refused unless the origin is in
WEB_ALLOWED_ORIGINS (default: the page's own, http://127.0.0.1:PORT and http://localhost:PORT),
never compared with the request's Host header, which a DNS-rebinding page controls.
See docs/security.md.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from livekit import api

from agent import catalog, config, logs, reports
from agent.errors import ServiceError

logger = logging.getLogger("services.web")

DIST = Path(__file__).resolve().parent.parent / "web" / "dist"
TOKEN_TTL = timedelta(minutes=10)
MAX_BODY = 16 * 1024
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # room names and identities
ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ATTRIBUTES, MAX_ATTRIBUTE_VALUE, MAX_DISPLAY_NAME, MAX_METADATA = 16, 256, 64, 1024
FIELDS = {
    "room_name",
    "participant_identity",
    "participant_name",
    "participant_metadata",
    "participant_attributes",
    "room_config",
}
# naming the room or the identity joins someone else's call: the operator grant only
OPERATOR_FIELDS = {"room_name", "participant_identity"}
SETTINGS_KEY = web.AppKey("settings", config.Settings)
ORIGINS_KEY = web.AppKey("origins", set)
CATALOG_KEY = web.AppKey("catalog", dict)
CSP = (
    "default-src 'self'; connect-src 'self' ws: wss: http: https:; "
    "media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


class RefusedError(Exception):
    """A request we answer with a 4xx and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- the token --------------------------------------------------------------------------------


def _name(body: dict, key: str, prefix: str) -> str:
    value = body.get(key)
    if value is None:  # the server's choice: unguessable, so nobody can aim at it
        return f"{prefix}-{secrets.token_hex(8)}"
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise RefusedError(400, f"{key} must be 1-64 letters, digits, '_' or '-'")
    return value


def _text(body: dict, key: str, limit: int) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise RefusedError(400, f"{key} must be printable text of at most {limit} characters")
    return value


def _attributes(body: dict) -> dict[str, str]:
    attrs = body.get("participant_attributes")
    if attrs is None:
        return {}
    if not isinstance(attrs, dict) or len(attrs) > MAX_ATTRIBUTES:
        raise RefusedError(
            400, f"participant_attributes must be an object of at most {MAX_ATTRIBUTES}"
        )
    for key, value in attrs.items():
        # lk.* attributes are LiveKit's own (agent state, transcription ids)
        if not ATTRIBUTE_KEY.fullmatch(key) or key.startswith("lk."):
            raise RefusedError(400, f"attribute name {key[:70]!r} is not allowed")
        if not isinstance(value, str) or len(value) > MAX_ATTRIBUTE_VALUE:
            raise RefusedError(400, f"attribute {key} must be a string of at most 256 characters")
    if "stt" in attrs:  # the agent reads it as an STT descriptor: refuse a wrong one early
        try:
            config.parse("stt", attrs["stt"], "attribute stt")
        except config.ConfigError as e:
            raise RefusedError(400, str(e)) from None
    return attrs


def _check_room_config(body: dict, agent_name: str) -> None:
    """The server decides the room's configuration; a client may only repeat it."""
    room_config = body.get("room_config")
    if room_config is None:
        return
    if not isinstance(room_config, dict) or set(room_config) - {"agents"}:
        raise RefusedError(403, "room_config may only name the agent: the server configures rooms")
    agents = room_config.get("agents") or []
    if not isinstance(agents, list) or any(
        not isinstance(a, dict) or a.get("agent_name") != agent_name or set(a) - {"agent_name"}
        for a in agents
    ):
        raise RefusedError(403, f"room_config may only dispatch the agent {agent_name!r}")


def mint(settings: config.Settings, body: dict[str, Any], operator: bool = False) -> dict[str, str]:
    """A request body -> {server_url, participant_token}, or RefusedError. Only an `operator`
    (who sent the operator grant, see the module doc) may name the room or the identity."""
    unknown = set(body) - FIELDS
    if unknown:
        raise RefusedError(
            400, f"unknown field {sorted(unknown)[0][:70]!r}; fields: {sorted(FIELDS)}"
        )
    named = sorted(OPERATOR_FIELDS & set(body))
    if named and not operator:
        raise RefusedError(
            403,
            f"{named[0]} needs the operator grant (Authorization: Bearer "
            "<TOKEN_ENDPOINT_SECRET>): the server chooses the room and identity of a new call",
        )
    room = _name(body, "room_name", "call")
    identity = _name(body, "participant_identity", "web")
    display_name = _text(body, "participant_name", MAX_DISPLAY_NAME)
    metadata = _text(body, "participant_metadata", MAX_METADATA)
    attributes = _attributes(body)
    _check_room_config(body, settings.agent_name)
    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_publish_sources=["microphone"],
        can_publish_data=True,
        can_subscribe=True,
        can_update_own_metadata=True,  # the pickers set the `language` and `stt` attributes
    )
    token = (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(identity)
        .with_name(display_name or identity)
        .with_metadata(metadata)
        .with_attributes(attributes)
        .with_ttl(TOKEN_TTL)
        .with_grants(grants)
        .with_room_config(
            api.RoomConfiguration(agents=[api.RoomAgentDispatch(agent_name=settings.agent_name)])
        )
        .to_jwt()
    )
    logger.info("token for %s in room %s (%s)", identity, room, settings.agent_name)
    return {"server_url": settings.livekit_url, "participant_token": token}


async def _read_json(request: web.Request) -> dict[str, Any]:
    if request.body_exists and request.content_type != "application/json":
        raise RefusedError(415, "send the body as application/json")
    raw = await request.read()  # over MAX_BODY: aiohttp raises 413 (the app's client_max_size)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RefusedError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RefusedError(400, "the body must be a JSON object")
    return body


def _bearer_matches(request: web.Request, secret: str) -> bool:
    """Whether the request carries `Authorization: Bearer <secret>` (a non-empty secret)."""
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    # surrogateescape: a header is bytes, and a non-UTF-8 one is just a wrong key, not an error
    value = value.strip().encode("utf-8", "surrogateescape")
    return (
        bool(secret) and scheme.lower() == "bearer" and hmac.compare_digest(value, secret.encode())
    )


async def token(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    secret = settings.token_endpoint_secret.get_secret_value()
    operator = _bearer_matches(request, secret)
    if secret and not operator:
        raise RefusedError(401, "token refused: send Authorization: Bearer <TOKEN_ENDPOINT_SECRET>")
    return web.json_response(mint(settings, await _read_json(request), operator=operator))


# -- the catalog the pickers show -------------------------------------------------------------


def catalog_json(settings: config.Settings) -> dict[str, Any]:
    """Every STT model with the languages it really speaks, whether this setup can run it, and
    the default: the configured model (`local/auto` too, not the engine it picked) and language."""
    try:
        current = config.resolve(settings).stt[0]
    except config.ConfigError:  # the worker reports it; the page still offers the default
        current = config.parse("stt", catalog.LOCAL_DEFAULTS["stt"])
    configured = settings.descriptor("stt").partition(":")[0]
    configured = catalog.ALIASES.get(configured, configured)
    if ("stt", configured) not in catalog.MODELS:
        configured = current.model.id
    models = []
    for model in catalog.STT_MODELS:
        descriptor = f"{model.id}:{model.default_variant}"
        only = {"stt": descriptor, "stt_options": {}, "stt_fallback": "", "language": ""}
        trial = settings.model_copy(update=only)
        try:
            config.resolve(trial)
            why = ""
        except config.ConfigError as e:
            why = str(e)
        models.append(
            {
                "id": model.id,
                "label": model.label or model.id,
                "languages": list(model.languages),  # empty: any ISO-639 code
                "default_language": model.default_variant,
                "available": not why,
                "why": why,
                "runs": runs_on(settings, model),
            }
        )
    languages = sorted({lang for m in catalog.STT_MODELS for lang in m.languages})
    return {
        "stt": models,
        "languages": languages,
        "default": {"stt": configured, "language": current.variant},
    }


# where a model's speech is transcribed, by route and by who answers LiveKit Inference
RUNS_ON = {"local": "this machine", "gateway": "local gateway", "livekit-cloud": "LiveKit Cloud"}


def runs_on(settings: config.Settings, model: catalog.Model) -> str:
    """Where the page says a model runs: this machine, the local gateway (offline too) or a
    cloud service."""
    if model.route == "local":
        return RUNS_ON["local"]
    if model.plugin_key and getattr(settings, model.plugin_key.lower()).get_secret_value():
        return f"your {model.provider} account"
    return RUNS_ON.get(settings.inference_provider, "not reachable")


async def catalog_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[CATALOG_KEY])


# -- the page ----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    page = DIST / "index.html"
    if not page.exists():
        return web.Response(
            status=503,
            text="the page is not built: run scripts/setup.sh (npm ci && npm run build in web/)",
        )
    return web.FileResponse(page, headers={"Content-Security-Policy": CSP})


# -- origins, errors ---------------------------------------------------------------------------


def allowed_origins(settings: config.Settings) -> set[str]:
    """WEB_ALLOWED_ORIGINS, else the page's own origins on its configured port: never derived
    from a request, whose Host header a DNS-rebinding page chooses."""
    listed = {o.strip().rstrip("/") for o in settings.web_allowed_origins.split(",") if o.strip()}
    if listed:
        return listed
    hosts = {"127.0.0.1", "localhost", settings.web_host} - {"0.0.0.0", "::", ""}
    return {f"http://{h}:{settings.web_port}" for h in hosts}


@web.middleware
async def api_guard(request: web.Request, handler) -> web.StreamResponse:
    """JSON errors for /api/*, and origins: a request carrying an Origin (every browser POST
    does) is served only when that origin is in the allowlist (allowed_origins)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[ORIGINS_KEY]
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if allowed else {}
    try:
        if origin is not None and not allowed:
            raise RefusedError(
                403, f"origin {origin[:100]!r} is not allowed (set WEB_ALLOWED_ORIGINS)"
            )
        if request.method == "OPTIONS" and allowed:  # CORS preflight
            return web.Response(
                status=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Content-Type, Authorization",
                    "Access-Control-Max-Age": "600",
                },
            )
        response = await handler(request)
        response.headers.update(cors)
        response.headers["Cache-Control"] = "no-store"
        return response
    except RefusedError as e:
        return web.json_response({"error": str(e)}, status=e.status, headers=cors)
    except web.HTTPException as e:  # aiohttp's own 404/405/413, as JSON
        return web.json_response({"error": e.reason}, status=e.status, headers=cors)
    except Exception:
        logger.exception("unexpected error on %s", request.path)
        return web.json_response({"error": "internal error"}, status=500, headers=cors)


def make_app(settings: config.Settings) -> web.Application:
    for name, value in (
        ("LIVEKIT_URL", settings.livekit_url),
        ("LIVEKIT_API_KEY", settings.livekit_api_key),
        ("LIVEKIT_API_SECRET", settings.livekit_api_secret.get_secret_value()),
    ):
        if not value:
            raise config.ConfigError(
                f"{name} is not set: the token endpoint signs tokens for the LiveKit server "
                "(copy .env.example to .env, or export it)"
            )
    app = web.Application(client_max_size=MAX_BODY, middlewares=[api_guard])
    app[SETTINGS_KEY] = settings
    app[ORIGINS_KEY] = allowed_origins(settings)
    app[CATALOG_KEY] = catalog_json(settings)
    app.router.add_get("/", index)
    app.router.add_get("/api/catalog", catalog_view)
    app.router.add_post("/api/token", token)
    add_call_routes(app)
    if DIST.is_dir():
        app.router.add_static("/assets", DIST / "assets")
    return app


# -- the calls' reports (read-only) ------------------------------------------------------------


def _calls_folder(request: web.Request) -> Path:
    """The reports' folder, once the caller may read them: what was said in every call is in
    them, so beyond loopback they take the same key as a token (TOKEN_ENDPOINT_SECRET)."""
    settings = request.app[SETTINGS_KEY]
    secret = settings.token_endpoint_secret.get_secret_value()
    if secret and not _bearer_matches(request, secret):
        raise RefusedError(401, "the calls need the access key (TOKEN_ENDPOINT_SECRET)")
    return reports.reports_dir(settings)


def _call(request: web.Request) -> tuple[Path, dict]:
    folder = _calls_folder(request)
    report = reports.find(folder, request.match_info["room"])
    if report is None:
        raise RefusedError(404, f"no call in room {request.match_info['room'][:80]!r}")
    return folder, report


async def calls_view(request: web.Request) -> web.Response:
    folder = _calls_folder(request)
    return web.json_response([reports.summary(r) for r in reports.load(folder)[:100]])


async def call_view(request: web.Request) -> web.Response:
    return web.json_response(_call(request)[1])


async def call_audio(request: web.Request) -> web.StreamResponse:
    folder, report = _call(request)
    name = report.get("recording") or ""
    path = folder / name
    if not name or Path(name).name != name or not path.is_file():  # a bare name in the folder
        raise RefusedError(404, "this call was not recorded (RECORD_CALLS)")
    return web.FileResponse(path, headers={"Content-Type": "audio/ogg"})


def add_call_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls", calls_view)
    app.router.add_get("/api/calls/{room}", call_view)
    app.router.add_get("/api/calls/{room}/audio", call_audio)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything


def main(argv: list[str]) -> None:
    settings = config.Settings.from_env()
    parser = argparse.ArgumentParser(
        prog="python -m agent web",
        description="Serve the browser page and its token endpoint.",
    )
    parser.add_argument("--host", default=settings.web_host)
    parser.add_argument("--port", type=int, default=settings.web_port)
    args = parser.parse_args(argv)
    secret = settings.token_endpoint_secret.get_secret_value()
    if not is_loopback(args.host) and not secret:
        raise config.ConfigError(
            f"refusing to hand out tokens on {args.host} without a credential: set "
            "TOKEN_ENDPOINT_SECRET (then open the page as http://HOST:PORT/#key=<secret>), "
            "or bind to 127.0.0.1"
        )
    # the page's own origins follow the address it is served on
    app = make_app(settings.model_copy(update={"web_host": args.host, "web_port": args.port}))
    logs.setup()
    if not (DIST / "index.html").exists():
        logger.warning("web/dist is missing: run `npm ci && npm run build` in web/")
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    suffix = "#key=<TOKEN_ENDPOINT_SECRET>" if secret else ""
    ready = f"page on http://{host}:{args.port}/{suffix} (agent {settings.agent_name})"
    try:  # aiohttp calls `print` once it listens: scripts/up.sh waits for that line
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            print=lambda _: print(ready, flush=True),
            access_log=None,
        )
    except OSError as e:
        raise ServiceError(
            f"cannot listen on {args.host}:{args.port} ({e.strerror}): pass --port or set WEB_PORT"
        ) from None
