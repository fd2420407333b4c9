"""Every typed key the service stores on the application or on a request, in one place, with the types
they hold that no lower module defines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from aiohttp import web

from ..storage.schema import SchemaGate
from ..core.access_tokens import AccessClaims
from ..core.accounts import Accounts
from ..core.auth import Authenticator
from ..core.csrf import CsrfTokens
from ..core.totp import Totp
from ..core.passkeys import Passkeys
from ..metrics import Metrics
from ..settings import Settings
from ..storage.client import Redis
from .cookies import CookiePolicy
from .paths import Paths

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouteWrapper(Protocol):
    """What routes.py needs of the request pipeline (pipeline.py, which reads the keys below)."""

    def wrap(self, handler: Handler, *, route: str, cache: str | None = ..., authenticate: bool = ...) -> Handler:
        ...


class AuthState(NamedTuple):
    """What the request pipeline learned about a request's access cookie (a tuple: built per request)."""

    user: AccessClaims | None = None
    expired: AccessClaims | None = None  # authentic but expired: a refresh may help
    stale: bool = False  # forged, malformed or its session ended: clear it


class FormPage(NamedTuple):
    """The page a form handler shows again, with the error, when its attempt fails (answers.py)."""

    template: str
    context: dict[str, object]


settings = web.AppKey("settings", Settings)
authenticator = web.AppKey("authenticator", Authenticator)
accounts = web.AppKey("accounts", Accounts)
passkeys = web.AppKey("passkeys", Passkeys)
cookies = web.AppKey("cookies", CookiePolicy)
csrf = web.AppKey("csrf", CsrfTokens)
metrics = web.AppKey("metrics", Metrics)
paths = web.AppKey("paths", Paths)
pipeline = web.AppKey("pipeline", RouteWrapper)
redis: web.AppKey[Redis] = web.AppKey("redis")  # a union (server or Cluster client)
schema = web.AppKey("schema", SchemaGate)
totp = web.AppKey("totp", Totp)

auth_state = web.RequestKey("auth_state", AuthState)
form_page = web.RequestKey("form_page", FormPage)
