"""`python -m agent doctor`: is this machine ready to run the agent? One screen, one fix per problem.

It checks, in order: the settings resolve; the credentials they need are present (values are
never shown); the LiveKit server answers and accepts the keys; each configured cloud provider
answers; the local model packages import; audio devices for `console`. It exits 1 when
something needed is missing, 0 otherwise (warnings do not count).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shutil
from dataclasses import dataclass
from urllib.parse import urlparse

import aiohttp

from agent import catalog, config
from agent.config import Settings
from agent.errors import ConfigError

TIMEOUT = 5.0  # seconds for each network check


@dataclass
class Check:
    status: str  # ok | warn | fail
    name: str
    detail: str
    fix: str = ""


def check_settings() -> tuple[list[Check], Settings | None, dict | None]:
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        return (
            [Check("fail", "settings", str(e), "fix the value in .env or the environment")],
            None,
            None,
        )
    try:
        plan = config.resolve(settings)
    except ConfigError as e:
        return [Check("fail", "settings", str(e))], settings, None
    # the primary STT, the LLM and the voice: what the checks below reach or load
    return [Check("ok", "settings", config.describe(plan))], settings, plan.components


def check_credentials(settings: Settings, resolved: dict | None) -> list[Check]:
    """Which credentials are set; a worker (start/dev/connect) needs the LiveKit three."""
    livekit = {
        "LIVEKIT_URL": settings.livekit_url,
        "LIVEKIT_API_KEY": settings.livekit_api_key,
        "LIVEKIT_API_SECRET": settings.livekit_api_secret.get_secret_value(),
    }
    missing = [name for name, value in livekit.items() if not value]
    checks = [
        Check(
            "fail",
            "credentials",
            f"{', '.join(missing)} not set",
            "copy .env.example to .env (it matches scripts/livekit-server.sh) or export them; "
            "`console` alone runs without them",
        )
        if missing
        else Check("ok", "credentials", "LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET set")
    ]
    keys = sorted({m.plugin_key for m in catalog.STT_MODELS if m.plugin_key})
    used = {d.model.plugin_key for d in (resolved or {}).values() if d.model.plugin_key}
    for key in keys:
        is_set = bool(getattr(settings, key.lower()).get_secret_value())
        if is_set:
            checks.append(Check("ok", "credentials", f"{key} set"))
        elif key in used and not settings.inference_url:
            checks.append(Check("fail", "credentials", f"{key} not set", f"export {key}=..."))
        else:
            checks.append(Check("ok", "credentials", f"{key} not set (not needed)"))
    return checks


async def check_livekit(settings: Settings) -> Check:
    from livekit import api

    url, key = settings.livekit_url, settings.livekit_api_key
    secret = settings.livekit_api_secret.get_secret_value()
    if not (url and key and secret):
        return Check("fail", "livekit server", "not checked: credentials missing (see above)")
    try:
        async with api.LiveKitAPI(
            url, key, secret, timeout=aiohttp.ClientTimeout(total=TIMEOUT), failover=False
        ) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest())
    except api.TwirpError as e:
        if e.status in (401, 403):
            return Check(
                "fail",
                "livekit server",
                f"{url} rejected the keys ({e.message})",
                "LIVEKIT_API_KEY/LIVEKIT_API_SECRET must match the server's keys "
                "(devkey/secret for scripts/livekit-server.sh)",
            )
        return Check("fail", "livekit server", f"{url} answered HTTP {e.status}: {e.message}")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return Check(
            "fail",
            "livekit server",
            f"{url} is not reachable ({type(e).__name__})",
            "start it: scripts/livekit-server.sh start (or fix LIVEKIT_URL)",
        )
    return Check("ok", "livekit server", f"{url} accepted the keys ({len(rooms.rooms)} rooms)")


async def check_cartesia(settings: Settings, resolved: dict | None) -> Check | None:
    """Cartesia's API status (`GET /`), when there is a key to ask with."""
    key = settings.cartesia_api_key.get_secret_value()
    if not key:
        return None
    base = settings.cartesia_base_url or "https://api.cartesia.ai"
    needed = any(d.model.provider == "cartesia" for d in (resolved or {}).values())
    bad = "fail" if needed else "warn"
    headers = {"X-API-Key": key, "Cartesia-Version": "2025-04-16"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
            http.get(base.rstrip("/") + "/", headers=headers) as resp,
        ):
            body = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return Check(
            bad,
            "cartesia",
            f"{base} is not reachable ({type(e).__name__})",
            "check the network or CARTESIA_BASE_URL; offline, use local/moonshine-tiny:en",
        )
    if resp.status != 200:
        return Check(
            bad,
            "cartesia",
            f"{base} answered HTTP {resp.status}: {body[:120]}",
            "check CARTESIA_API_KEY" if resp.status in (401, 403) else "",
        )
    return Check("ok", "cartesia", f"{base} is up ({body[:80]})")


async def check_inference(settings: Settings, resolved: dict | None) -> Check | None:
    """LiveKit Inference (or the local gateway) when a descriptor goes through it."""
    uses = [str(d) for d in (resolved or {}).values() if d.model.route == "inference"]
    if not uses or not settings.inference_url:
        return None
    parsed = urlparse(settings.inference_url)
    origin = f"{'https' if parsed.scheme in ('wss', 'https') else 'http'}://{parsed.netloc}/"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
            http.get(origin) as resp,
        ):
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        return Check(
            "fail",
            "inference",
            f"{settings.inference_url} is not reachable "
            f"({type(e).__name__}) but {', '.join(uses)} need it",
            "start the gateway (python -m agent gateway) or use local descriptors",
        )
    return Check("ok", "inference", f"{settings.inference_url} answers (HTTP {status})")


def check_local_models(resolved: dict | None) -> list[Check]:
    configured = {d.model.id for d in (resolved or {}).values()}
    checks = []
    for model in catalog.MODELS.values():
        if model.program:
            label = f"{model.kind} {model.id}"
            if shutil.which(model.program):
                checks.append(Check("ok", "program", f"{label}: {model.program} installed"))
            else:
                status = "fail" if model.id in configured else "warn"
                fix = f"run scripts/setup.sh (or `apt-get install {model.program}`)"
                checks.append(Check(status, "program", f"{label}: {model.program} missing", fix))
        if not model.package:
            continue
        module, requirement = model.package.split("=", 1)
        label = f"{model.kind} {model.id}"
        if importlib.util.find_spec(module) is not None:
            checks.append(Check("ok", "package", f"{label}: {requirement} importable"))
        else:
            status = "fail" if model.id in configured else "warn"
            checks.append(
                Check(
                    status,
                    "package",
                    f"{label}: {requirement} missing",
                    f"run {config.install_hint(model)}",
                )
            )
    return checks


def check_audio() -> Check:
    try:
        import sounddevice
    except OSError:  # the module loads, PortAudio does not
        return Check(
            "fail",
            "audio",
            "PortAudio library not found (console needs it, even --text)",
            "apt-get install libportaudio2 (scripts/setup.sh does)",
        )
    devices = sounddevice.query_devices()
    inputs = sum(1 for d in devices if d["max_input_channels"] > 0)
    outputs = sum(1 for d in devices if d["max_output_channels"] > 0)
    if not (inputs and outputs):
        return Check(
            "warn",
            "audio",
            f"{inputs} input and {outputs} output devices",
            "console runs with --text only; audio mode needs a microphone and a speaker",
        )
    return Check("ok", "audio", f"{inputs} input and {outputs} output devices for console")


async def run_checks() -> list[Check]:
    checks, settings, resolved = check_settings()
    if settings is not None:
        checks += check_credentials(settings, resolved)
        network = await asyncio.gather(
            check_livekit(settings),
            check_cartesia(settings, resolved),
            check_inference(settings, resolved),
        )
        checks += [c for c in network if c is not None]
    checks += check_local_models(resolved)
    checks.append(check_audio())
    return checks


MARK = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def main(argv: list[str]) -> None:
    argparse.ArgumentParser(
        prog="python -m agent doctor", description=__doc__.split("\n")[0]
    ).parse_args(argv)
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    checks = asyncio.run(run_checks())
    for c in checks:
        console.print(f"{MARK[c.status]}  {c.name:<15} {escape(c.detail)}")
        if c.fix and c.status != "ok":
            console.print(f"      {'':<15} -> {escape(c.fix)}")
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        console.print(
            f"\n{len(failed)} problem(s): fix the lines marked FAIL, then run doctor again."
        )
        raise SystemExit(1)
    console.print("\nready.")
