"""The account page and its JSON twins: the user's sessions, revoking them, changing the password."""

from __future__ import annotations

import time

import aiohttp_jinja2
from aiohttp import web

from ...errors import InvalidInput
from ...storage.sessions import SessionInfo
from .. import appkeys
from ..negotiate import client, read_fields, wants_html
from ..pipeline import csrf_token, require_user
from .passkeys import passkey_json


def _session_json(info: SessionInfo, current: str) -> dict[str, object]:
    return {"id": info.session_id, "device": info.device, "ip": info.ip,
            "created": int(info.created), "last_used": int(info.last_used), "current": info.session_id == current,
            "sign_in": info.sign_in.method, "remembered": info.sign_in.remembered}


# How each sign-in method reads on the account page (storage/sessions.py METHODS).
SIGN_IN_NAMES = {"password": "Password", "passkey": "Passkey", "password+totp": "Password and authenticator code",
                 "password+recovery": "Password and recovery code"}


def _when(seconds: float) -> dict[str, str]:
    """A moment as ``<time>`` wants it: ISO 8601 in UTC, and UTC text (static/local-time.js shows the
    viewer's zone)."""
    moment = time.gmtime(seconds)
    return {"iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", moment), "text": time.strftime("%Y-%m-%d %H:%M UTC", moment)}


async def page(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    sessions = await request.app[appkeys.accounts].sessions_of(user)
    rows = [dict(_session_json(s, user.session_id), created=_when(s.created), last_used=_when(s.last_used))
            for s in sessions]
    mfa = await request.app[appkeys.totp].status(user.user_id)
    passkeys = [dict(passkey_json(p), created=_when(p.created), last_used=_when(p.last_used) if p.last_used else None)
                for p in await request.app[appkeys.passkeys].of_user(user.user_id)]
    context = {"user": user, "sessions": rows, "csrf": csrf_token(request), "notice": request.query.get("done"),
               "totp": {"on": mfa.secret is not None, "since": _when(mfa.since), "recovery_left": mfa.recovery_left},
               "passkeys": passkeys,
               "sign_in_names": SIGN_IN_NAMES,
               "min_length": request.app[appkeys.settings].passwords.min_length}
    return aiohttp_jinja2.render_template("account.html", request, context)


async def list_sessions(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    sessions = await request.app[appkeys.accounts].sessions_of(user)
    return web.json_response({"sessions": [_session_json(s, user.session_id) for s in sessions]})


async def revoke(request: web.Request) -> web.StreamResponse:
    """End one session. Ending the current one is signing out."""
    user = require_user(request)
    session_id = request.match_info["session_id"]
    await request.app[appkeys.authenticator].revoke_session(user, session_id)
    return done(request, signed_out=session_id == user.session_id, notice="revoked")


async def revoke_all(request: web.Request) -> web.StreamResponse:
    """Sign out everywhere, this browser included."""
    user = require_user(request)
    await request.app[appkeys.authenticator].logout_everywhere(user.user_id)
    return done(request, signed_out=True, notice="")


async def change_password(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    fields = await read_fields(request, "current", "new", "confirm")
    if fields["confirm"] and fields["confirm"] != fields["new"]:  # the form's second field; optional in JSON
        raise InvalidInput("The new password and its confirmation differ. Nothing was changed.")
    await request.app[appkeys.accounts].change_password(user, fields["current"], fields["new"], client(request))
    return done(request, signed_out=False, notice="password")


def done(request: web.Request, *, signed_out: bool, notice: str) -> web.StreamResponse:
    app = request.app
    paths = app[appkeys.paths]
    if not wants_html(request):
        response = web.Response(status=204)
    elif signed_out:
        response = web.Response(status=303, headers={"Location": paths.login})
    else:
        response = web.Response(status=303, headers={"Location": f"{paths.account}?done={notice}"})
    if signed_out:
        app[appkeys.cookies].clear_session(response)
    return response
