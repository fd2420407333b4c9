"""The nginx ``auth_request`` endpoint: who the access cookie names, as headers, or 401.

nginx sends a body-less GET subrequest carrying the browser's cookies and the original URI in
``X-Original-URI``. The request pipeline has already judged the access cookie; this handler only reads
its verdict, so there is no second verification path. It never redirects (``auth_request`` treats any
status but 2xx, 401 and 403 as an error); instead a 401 names where nginx should send the browser in
``X-Auth-Redirect``: the refresh hop for an authentic but expired token, else the login page, both
with ``next`` back to the original URI (checked like every ``next``).
"""

from __future__ import annotations

from aiohttp import web

from .. import appkeys

ORIGINAL_URI = "X-Original-URI"


async def verify(request: web.Request) -> web.StreamResponse:
    state = request[appkeys.auth_state]
    if state.user is not None:
        return web.Response(status=200, headers={"X-Auth-User": state.user.username,
                                                 "X-Auth-Subject": state.user.user_id,
                                                 "X-Auth-Session": state.user.session_id})
    paths = request.app[appkeys.paths]
    next_path = paths.safe_next(request.headers.get(ORIGINAL_URI))
    target = paths.refresh_url(next_path) if state.expired is not None else paths.login_url(next_path)
    return web.Response(status=401, headers={"X-Auth-Redirect": target})
