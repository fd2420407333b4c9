"""Every typed key the service stores on the application or on a request, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from aiohttp import web

from .auth import Authenticator
from .cookies import CookiePolicy
from .csrf import CsrfTokens
from .metrics import Metrics
from .paths import Paths
from .settings import Settings
from .store import Redis
from .tokens import AccessClaims

if TYPE_CHECKING:  # middleware.py reads the keys below
    from .middleware import Pipeline


class AuthState(NamedTuple):
    """What the request pipeline learned about a request's access cookie (a tuple: built per request)."""

    user: AccessClaims | None = None
    expired: AccessClaims | None = None  # authentic but expired: a refresh may help
    stale: bool = False  # forged, malformed or its session ended: clear it


settings = web.AppKey("settings", Settings)
authenticator = web.AppKey("authenticator", Authenticator)
cookies = web.AppKey("cookies", CookiePolicy)
csrf = web.AppKey("csrf", CsrfTokens)
metrics = web.AppKey("metrics", Metrics)
paths = web.AppKey("paths", Paths)
pipeline: web.AppKey[Pipeline] = web.AppKey("pipeline")
redis: web.AppKey[Redis] = web.AppKey("redis")  # a union (server or Cluster client)

auth_state = web.RequestKey("auth_state", AuthState)
login_attempt = web.RequestKey("login_attempt", dict)
