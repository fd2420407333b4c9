"""Step-up: where a signed-in user confirms it is them before a sensitive change (the password, passkeys,
TOTP, recovery codes), then goes back to it with ``next``."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ...core.auth import Issued
from .. import appkeys
from ..negotiate import client, read_fields, wants_html
from ..pipeline import csrf_token, require_user


async def page(request: web.Request) -> web.StreamResponse:
    require_user(request)
    next_path = request.app[appkeys.paths].safe_next(request.query.get("next") or request.app[appkeys.paths].account)
    return aiohttp_jinja2.render_template("confirm.html", request, await _context(request, next_path))


async def confirm(request: web.Request) -> web.StreamResponse:
    """The password again, or a TOTP or recovery code: the session's auth time, and a new access
    token's, become now."""
    app, user = request.app, require_user(request)
    fields = await read_fields(request, "password", "code", "next")
    next_path = app[appkeys.paths].safe_next(fields["next"] or app[appkeys.paths].account)
    request[appkeys.form_page] = appkeys.FormPage("confirm.html", await _context(request, next_path))
    if fields["code"] and not fields["password"]:
        issued = await app[appkeys.totp].step_up(user, fields["code"], client(request))
    else:
        issued = await app[appkeys.authenticator].confirm_password(user, fields["password"], client(request))
    return stepped_up(request, issued, next_path)


def stepped_up(request: web.Request, issued: Issued, next_path: str) -> web.StreamResponse:
    """The answer to a step-up by any factor: back to ``next`` (or JSON), with the new access cookie."""
    if wants_html(request):
        response: web.StreamResponse = web.Response(status=303, headers={"Location": next_path})
    else:
        response = web.json_response({"auth_time": issued.claims.auth_time, "access_expires": issued.claims.expires_at})
    request.app[appkeys.cookies].set_access(response, issued)
    return response


async def _context(request: web.Request, next_path: str) -> dict[str, object]:
    user = require_user(request)
    totp = (await request.app[appkeys.totp].status(user.user_id)).secret is not None
    has_passkeys = bool(await request.app[appkeys.passkeys].of_user(user.user_id))
    return {"user": user, "csrf": csrf_token(request), "next": next_path, "totp": totp, "has_passkeys": has_passkeys}
