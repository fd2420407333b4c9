"""The route table: every path the service answers, under the configured prefix, each handler inside
the request pipeline (pipeline.py), 404 and 405 answers included.

Routes added to the app later (an embedding app's own pages) go through :func:`add` as well; the app
refuses to start with a route outside the pipeline (:meth:`Pipeline.check_routes`). Route names label
the latency metrics; the methods of one path share its name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from ..errors import MethodNotAllowed, NotFound
from . import appkeys
from .appkeys import Handler
from .handlers import account, api, confirm, jwks, ops, pages, passkeys, static, totp, verify
from .paths import Paths


def add(app: web.Application, method: str, path: str, handler: Handler, route: str, *,
        cache: str | None = "no-store", authenticate: bool = True) -> None:
    """Route ``method path`` to ``handler`` inside the request pipeline (GET brings HEAD along).

    ``route`` names it in metrics; ``cache`` is its ``Cache-Control`` (None: the handler's own);
    ``authenticate=False`` leaves the access cookie unread (no user: public data, probes).
    """
    wrapped = app[appkeys.pipeline].wrap(handler, route=route, cache=cache, authenticate=authenticate)
    if method == "GET":
        app.router.add_get(path, wrapped)
    else:
        app.router.add_route(method, path, wrapped)


def setup_routes(app: web.Application, paths: Paths, static_dirs: Sequence[Path]) -> None:
    p = paths.prefix
    route = functools.partial(add, app)
    route("GET", paths.home, pages.home, "home")
    route("GET", paths.login, pages.login_form, "login")
    route("POST", paths.login, pages.login, "login")
    route("POST", paths.login_code, pages.login_code, "login_code")
    route("POST", paths.logout, pages.logout, "logout")
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):  # the hop replays the original method here
        route(method, paths.refresh, api.refresh, "refresh")
    route("GET", paths.verify, verify.verify, "verify")
    route("GET", p + "/api/me", api.me, "me")
    route("GET", paths.account, account.page, "account")
    route("POST", paths.account + "/sessions/{session_id}/revoke", account.revoke, "revoke")
    route("POST", paths.account + "/sessions/revoke-all", account.revoke_all, "revoke_all")
    route("POST", paths.account + "/password", account.change_password, "password")
    route("GET", paths.confirm, confirm.page, "confirm")
    route("POST", paths.confirm, confirm.confirm, "confirm")
    route("POST", paths.account + "/totp/setup", totp.setup, "totp_setup")
    route("POST", paths.account + "/totp", totp.enable, "totp")
    route("POST", paths.account + "/totp/disable", totp.disable, "totp_disable")
    route("POST", paths.account + "/recovery-codes", totp.recovery_codes, "recovery_codes")
    route("GET", p + "/api/sessions", account.list_sessions, "sessions")
    route("DELETE", p + "/api/sessions/{session_id}", account.revoke, "revoke")
    route("DELETE", p + "/api/sessions", account.revoke_all, "revoke_all")
    route("POST", p + "/api/password", account.change_password, "password")
    route("POST", p + "/api/step-up", confirm.confirm, "confirm")
    route("POST", p + "/api/totp/setup", totp.setup, "totp_setup")
    route("POST", p + "/api/totp", totp.enable, "totp")
    route("POST", p + "/api/totp/disable", totp.disable, "totp_disable")
    route("POST", p + "/api/recovery-codes", totp.recovery_codes, "recovery_codes")
    route("POST", paths.passkey_login_options, passkeys.login_options, "passkey_login")
    route("POST", paths.passkey_login, passkeys.login, "passkey_login")
    route("POST", paths.passkeys + "/options", passkeys.registration_options, "passkey_register")
    route("POST", paths.passkeys, passkeys.register, "passkey_register")
    route("POST", paths.passkeys + "/{credential_id}/remove", passkeys.remove, "passkey_remove")
    route("POST", paths.passkeys + "/{credential_id}/rename", passkeys.rename, "passkey_rename")
    route("PATCH", p + "/api/passkeys/{credential_id}", passkeys.rename, "passkey_rename")
    route("GET", p + "/api/passkeys", passkeys.list_passkeys, "passkeys")
    route("DELETE", p + "/api/passkeys/{credential_id}", passkeys.remove, "passkey_remove")
    route("POST", paths.confirm + "/passkey/options", passkeys.step_up_options, "confirm_passkey")
    route("POST", paths.confirm + "/passkey", passkeys.step_up, "confirm_passkey")
    # Public data: caches may keep the keys a while. Verifiers fetch again on meeting an unknown kid.
    route("GET", paths.jwks, jwks.jwks, "jwks", cache="public, max-age=300", authenticate=False)
    # Probes and scrapers never depend on sessions; /metrics is for operators: keep it off the public proxy.
    route("GET", paths.healthz, ops.healthz, "healthz", authenticate=False)
    route("GET", paths.readyz, ops.readyz, "readyz", authenticate=False)
    route("GET", paths.metrics, ops.metrics, "metrics", authenticate=False)
    route("GET", paths.static + "/{name}", static.files(static_dirs), "static", cache=None, authenticate=False)
    # Tried last whatever is added later: 404 and 405 answers get the pipeline's headers too.
    route("*", "/{path:.*}", unmatched, "unmatched", authenticate=False)


async def unmatched(request: web.Request) -> web.StreamResponse:
    """404, or 405 with ``Allow`` when another method of this path has a route."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise MethodNotAllowed(allowed)
    raise NotFound("There is no page at this address.")
