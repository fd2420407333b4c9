"""The composition root: ``create_app`` builds every object, wires them together and owns Redis."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..clock import Clock, system_clock
from ..core import keyring
from ..core.access_tokens import TokenCodec
from ..core.accounts import Accounts
from ..core.auth import Authenticator
from ..core.csrf import CsrfTokens
from ..core.passkeys import Passkeys
from ..core.passwords import Passwords
from ..core.refresh_tokens import RefreshTokens
from ..core.revocations import RevocationView
from ..core.totp import Totp
from ..errors import ServiceError, StoreUnavailable
from ..logs import quiet_bad_requests
from ..metrics import Counts, Metrics
from ..settings import Settings
from ..storage.channel import RevocationChannel
from ..storage.client import KeySpace, Redis, connect
from ..storage.embedded import EmbeddedRedis
from ..storage.mfa import MfaStore
from ..storage.passkeys import PasskeyStore
from ..storage.schema import SchemaGate
from ..storage.sessions import SessionStore
from ..storage.throttle import LoginThrottle
from ..storage.users import UserStore
from . import appkeys
from .cookies import CookiePolicy
from .forwarded import forwarded_middleware, parse_networks
from .paths import Paths
from .pipeline import Pipeline
from .routes import setup_routes

log = logging.getLogger("service")
CSRF_KEY = "csrf.key"
MFA_KEY = "mfa.key"  # seals TOTP secrets and keys the recovery codes' HMACs (core/totp.py)


def build_authenticator(settings: Settings, redis: Redis, clock: Clock, *,
                        metrics: Counts | None = None) -> Authenticator:
    """The core, wired: also used by the CLI, which needs it without a web application."""
    keys_dir = settings.storage.keys
    ring = keyring.KeyDirectory(keys_dir, settings.tokens.algorithm, clock)  # follows `keys rotate`/`prune`
    space = KeySpace(settings.redis.key_prefix)
    sessions = SessionStore(redis, space, settings.sessions, clock)
    return Authenticator(
        users=UserStore(redis, space),
        sessions=sessions,
        revocations=RevocationView(RevocationChannel(redis, space), sessions),
        passwords=Passwords(settings.passwords),
        codec=TokenCodec(settings.tokens, ring, clock),
        refresh_tokens=RefreshTokens(keyring.load_or_create_refresh_key(keys_dir)),
        throttle=LoginThrottle(redis, space, settings.throttle),
        clock=clock,
        outage=settings.redis.outage,
        step_up_window=settings.sessions.step_up_window,
        mfa=MfaStore(redis, space),
        metrics=metrics,
    )


def build_totp(settings: Settings, auth: Authenticator, clock: Clock, *, metrics: Counts | None = None) -> Totp:
    """The second factor, wired to the core it signs in through."""
    assert auth.mfa is not None
    key = keyring.load_or_create_secret(settings.storage.keys, MFA_KEY)
    return Totp(auth, auth.mfa, key, clock, issuer=settings.ui.site_name, metrics=metrics)


def build_passkeys(settings: Settings, redis: Redis, auth: Authenticator, clock: Clock, *,
                   metrics: Counts | None = None) -> Passkeys:
    """The passkey ceremonies, wired: the web app's and the CLI's."""
    return Passkeys(auth, PasskeyStore(redis, KeySpace(settings.redis.key_prefix)), settings, clock, metrics=metrics)


def prepare_keys(settings: Settings) -> None:
    """Create every missing secret now, before several workers could race to make their own."""
    keys_dir = settings.storage.keys
    keyring.load_or_create(keys_dir, settings.tokens.algorithm)
    keyring.load_or_create_refresh_key(keys_dir)
    keyring.load_or_create_secret(keys_dir, CSRF_KEY)
    keyring.load_or_create_secret(keys_dir, MFA_KEY)


def open_redis(settings: Settings, *, exclusive: bool = False) -> tuple[Redis, EmbeddedRedis | None]:
    """A client for ``redis.url``, or for the embedded server (not yet started) when it is empty;
    ``exclusive`` for a service, which may not share another running service's embedded server."""
    if settings.redis.url:
        return connect(settings.redis.url, settings.redis), None
    embedded = EmbeddedRedis(settings.storage.data_dir, exclusive=exclusive)
    return connect(embedded.url, settings.redis), embedded


def create_app(settings: Settings, *, redis: Redis | None = None, clock: Clock | None = None) -> web.Application:
    """The service as an aiohttp application. With ``redis`` given, the caller owns that client."""
    clock = clock or system_clock
    quiet_bad_requests()
    embedded = None
    if redis is None:
        redis, embedded = open_redis(settings, exclusive=True)
        owns_client = True
    else:
        owns_client = False
    paths = Paths(settings)
    cookies = CookiePolicy(settings, paths, clock)
    metrics = Metrics()  # a registry per app: one process may build many (tests)
    auth = build_authenticator(settings, redis, clock, metrics=metrics)
    csrf = CsrfTokens(keyring.load_or_create_secret(settings.storage.keys, CSRF_KEY))

    proxies = parse_networks(settings.server.trusted_proxies)
    app = web.Application(
        client_max_size=settings.server.max_body,
        # Only behind trusted proxies: the request pipeline must see the real client.
        middlewares=[forwarded_middleware(proxies)] if proxies else [],
    )
    app[appkeys.settings] = settings
    app[appkeys.authenticator] = auth
    app[appkeys.accounts] = Accounts(auth)
    app[appkeys.totp] = build_totp(settings, auth, clock, metrics=metrics)
    app[appkeys.passkeys] = build_passkeys(settings, redis, auth, clock, metrics=metrics)
    app[appkeys.cookies] = cookies
    app[appkeys.csrf] = csrf
    app[appkeys.metrics] = metrics
    app[appkeys.paths] = paths
    app[appkeys.redis] = redis
    app[appkeys.schema] = SchemaGate(redis, KeySpace(settings.redis.key_prefix))
    # An operator's directory comes first: its files replace their packaged namesakes, no others.
    templates = jinja2.FileSystemLoader(overridable(settings.ui.templates_dir, "templates"))
    env = aiohttp_jinja2.setup(app, loader=templates, autoescape=True)
    env.globals["paths"] = paths
    env.globals["site_name"] = settings.ui.site_name
    app[appkeys.pipeline] = pipeline = Pipeline(auth, cookies, paths, csrf, metrics, hsts=settings.cookies.secure,
                                                body_timeout=settings.server.body_timeout)
    setup_routes(app, paths, overridable(settings.ui.static_dir, "static"))
    app.on_startup.append(pipeline.check_routes)
    app.cleanup_ctx.append(_redis_lifetime(redis, embedded, owns_client))
    app.cleanup_ctx.append(_revocation_listener)
    app.on_startup.append(_check_schema)
    app.on_startup.append(_hint_first_user)
    return app


def overridable(operator_dir: str, name: str) -> list[Path]:
    """Where to look for a template or static file, first match wins: ``operator_dir`` (if set), then
    the packaged ``name`` directory."""
    operator = [Path(operator_dir)] if operator_dir else []
    return [*operator, shipped(name)]


def shipped(name: str) -> Path:
    """A directory shipped inside the package: ``templates`` or ``static`` (the repo's top-level folders,
    mapped into ``service`` by pyproject.toml), wherever the package is installed."""
    try:
        path = Path(str(importlib.resources.files(f"service.{name}")))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_dir():
        raise ServiceError(f"the package's {name}/ directory is missing: reinstall cookie-session-service")
    return path


async def _check_schema(app: web.Application) -> None:
    """Data of a newer release stops the start (SchemaMismatch); unreachable Redis defers to /readyz."""
    with contextlib.suppress(StoreUnavailable):
        await app[appkeys.schema].ensure()


async def _hint_first_user(app: web.Application) -> None:
    try:
        if not await app[appkeys.accounts].count():
            log.warning("no users yet: create one with `cookie-session-service users add NAME` (or `python -m service users add NAME`)")
    except StoreUnavailable:  # an external Redis may come later; /readyz says so meanwhile
        log.warning("redis is not reachable yet")


async def _revocation_listener(app: web.Application) -> AsyncIterator[None]:
    """Keeps the local view of revoked sessions current (core/revocations.py) while the app runs."""
    task = asyncio.create_task(app[appkeys.authenticator].revocations.run())
    yield
    # redis-py can swallow a cancellation that lands while it subscribes (a start that fails moments
    # after this began): cancel again until the task has ended.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _redis_lifetime(redis: Redis, embedded: EmbeddedRedis | None, owns_client: bool):  # type: ignore[no-untyped-def]
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        supervisor = None
        if embedded is not None:
            await embedded.start()
            supervisor = asyncio.create_task(embedded.keep_alive())
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            if owns_client:
                await redis.aclose()
            if embedded is not None:
                await embedded.stop()

    return lifetime
