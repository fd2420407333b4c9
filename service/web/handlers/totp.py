"""The account page's two-step sign-in: setting up an authenticator app (TOTP), recovery codes, and
turning it off; each answers a form with a page and a script with JSON."""

from __future__ import annotations

import aiohttp_jinja2
import segno
from aiohttp import web

from ...core.totp import Setup
from .. import appkeys
from ..negotiate import client, read_fields, wants_html
from ..pipeline import csrf_token, require_user
from .account import done


async def setup(request: web.Request) -> web.StreamResponse:
    """A new secret to scan: the QR code (an SVG image; the CSP allows data: images) and the text."""
    user = require_user(request)
    started = await request.app[appkeys.totp].begin(user)
    if not wants_html(request):
        return web.json_response({"secret": started.secret, "uri": started.uri})
    return aiohttp_jinja2.render_template("totp_setup.html", request, _setup_context(request, started))


async def enable(request: web.Request) -> web.StreamResponse:
    """The first code confirms the app: TOTP is on, and the recovery codes are shown, this once."""
    user = require_user(request)
    fields = await read_fields(request, "code")
    started = await request.app[appkeys.totp].pending(user)
    if started is not None:  # a mistyped code shows the same QR code again
        request[appkeys.form_page] = appkeys.FormPage("totp_setup.html", _setup_context(request, started))
    codes = await request.app[appkeys.totp].confirm(user, fields["code"])
    return _codes(request, codes, enabled=True)


async def recovery_codes(request: web.Request) -> web.StreamResponse:
    """Ten new recovery codes; the old ones stop working."""
    user = require_user(request)
    codes = await request.app[appkeys.totp].regenerate(user)
    return _codes(request, codes, enabled=False)


async def disable(request: web.Request) -> web.StreamResponse:
    """TOTP off, given a current code or a recovery code."""
    user = require_user(request)
    fields = await read_fields(request, "code")
    await request.app[appkeys.totp].disable(user, fields["code"], client(request))
    return done(request, signed_out=False, notice="totp_off")


def _setup_context(request: web.Request, started: Setup) -> dict[str, object]:
    qr = segno.make(started.uri, error="m").svg_data_uri(scale=4, border=2)
    return {"user": require_user(request), "csrf": csrf_token(request), "qr": qr, "secret": started.secret}


def _codes(request: web.Request, codes: list[str], *, enabled: bool) -> web.StreamResponse:
    if not wants_html(request):
        return web.json_response({"recovery_codes": codes})
    context = {"user": require_user(request), "codes": codes, "enabled": enabled}
    return aiohttp_jinja2.render_template("recovery_codes.html", request, context)
