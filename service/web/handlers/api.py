"""JSON endpoints and the refresh endpoint that the auto-refresh hop goes through."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys
from ..pipeline import csrf_token, require_user


async def refresh(request: web.Request) -> web.StreamResponse:
    """Rotate the refresh token. With ``next`` (the pipeline's hop) or on GET, answer ``307 → next``,
    so the browser replays the original request with fresh cookies; otherwise answer JSON."""
    app = request.app
    state = request[appkeys.auth_state]
    issued = await app[appkeys.authenticator].rotate(app[appkeys.cookies].read_refreshes(request),
                                                     bound_to=state.user or state.expired)
    if "next" in request.query or request.method == "GET":
        next_path = app[appkeys.paths].safe_next(request.query.get("next"))
        response: web.StreamResponse = web.Response(status=307, headers={"Location": next_path})
    else:
        response = web.json_response({"access_expires": issued.claims.expires_at,
                                      "session_expires": int(issued.refresh_expires)})
    app[appkeys.cookies].set_session(response, issued)
    return response


async def me(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    return web.json_response({"id": user.user_id, "name": user.username, "session": user.session_id,
                              "access_expires": user.expires_at, "csrf_token": csrf_token(request)})
