"""The route table: every path the service answers, under the configured prefix.

Route names label the latency metrics (middleware.py); a route without one is labelled by its
resource's pattern, so methods of one path share its name (aiohttp then keeps them in one resource).
"""

from __future__ import annotations

from aiohttp import web

from .handlers import account, api, keys, ops, pages, verify
from .paths import Paths


def setup_routes(app: web.Application, paths: Paths, static_dir: str) -> None:
    p = paths.prefix
    app.router.add_get(paths.home, pages.home, name="home")
    app.router.add_get(paths.login, pages.login_form, name="login")
    app.router.add_post(paths.login, pages.login, name="login")
    app.router.add_post(paths.logout, pages.logout, name="logout")
    app.router.add_get(paths.refresh, api.refresh, name="refresh")
    for method in ("POST", "PUT", "PATCH", "DELETE"):  # the hop replays the original method here
        app.router.add_route(method, paths.refresh, api.refresh, name="refresh")
    app.router.add_get(paths.verify, verify.verify, name="verify")
    app.router.add_get(p + "/api/me", api.me, name="me")
    app.router.add_get(paths.account, account.page, name="account")
    app.router.add_post(paths.account + "/sessions/{session_id}/revoke", account.revoke, name="revoke")
    app.router.add_post(paths.account + "/sessions/revoke-all", account.revoke_all, name="revoke_all")
    app.router.add_post(paths.account + "/password", account.change_password, name="password")
    app.router.add_get(p + "/api/sessions", account.list_sessions, name="sessions")
    app.router.add_delete(p + "/api/sessions/{session_id}", account.revoke)
    app.router.add_delete(p + "/api/sessions", account.revoke_all)
    app.router.add_post(p + "/api/password", account.change_password)
    app.router.add_get(paths.jwks, keys.jwks, name="jwks")
    app.router.add_get(paths.healthz, ops.healthz, name="healthz")
    app.router.add_get(paths.readyz, ops.readyz, name="readyz")
    app.router.add_get(paths.metrics, ops.metrics, name="metrics")  # operators only: keep it off the public proxy
    app.router.add_static(paths.static, static_dir, name="static")
