"""Passkey endpoints: sign-in before a session (JSON, bound to the login nonce), registering, listing
and removing a signed-in user's passkeys, and stepping up with one. The ceremonies are core/passkeys.py's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import InvalidInput
from ...storage.passkeys import Passkey
from .. import appkeys
from ..negotiate import client, read_fields, read_object, wants_html
from ..pipeline import require_user
from .confirm import stepped_up


def passkey_json(passkey: Passkey) -> dict[str, object]:
    return {"id": passkey.id, "name": passkey.name, "created": int(passkey.created),
            "last_used": int(passkey.last_used) if passkey.last_used else None,
            "backup_eligible": passkey.backup_eligible, "backed_up": passkey.backed_up,
            "transports": list(passkey.transports)}


def _options(text: str) -> web.StreamResponse:
    return web.Response(text=text, content_type="application/json")


def _credential(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise InvalidInput("the body needs a credential object")
    return credential


async def login_options(request: web.Request) -> web.StreamResponse:
    """Sign-in options bound to the login nonce cookie; a client without one gets one here."""
    cookies = request.app[appkeys.cookies]
    nonces = cookies.read_login_nonces(request)
    nonce = nonces[-1] if nonces else request.app[appkeys.csrf].new_nonce()
    response = _options(await request.app[appkeys.passkeys].sign_in_options(nonce))
    if not nonces:
        cookies.set_login_nonce(response, nonce)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """``{"credential": <PublicKeyCredential.toJSON()>, "remember": bool, "next": path}``: the
    password sign-in's JSON answer and cookies, plus ``next``."""
    app = request.app
    body = await read_object(request)
    nonces = app[appkeys.cookies].read_login_nonces(request)
    state = request[appkeys.auth_state]
    issued = await app[appkeys.passkeys].sign_in(nonces[-1] if nonces else "", _credential(body), client(request),
                                                 remember=body.get("remember", True) is not False)
    previous = state.user or (state.expired if state.expired and state.expired.user_id == issued.claims.user_id
                              else None)
    if previous is not None:  # a new sign-in never inherits the old session (fixation), as pages.login
        await app[appkeys.authenticator].logout(previous)
    next_path = app[appkeys.paths].safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    response = web.json_response({
        "user": {"id": issued.claims.user_id, "name": issued.claims.username},
        "session": issued.claims.session_id, "access_expires": issued.claims.expires_at,
        "session_expires": int(issued.refresh_expires), "remembered": issued.remembered,
        "csrf_token": app[appkeys.csrf].for_session(issued.claims.session_id), "next": next_path})
    app[appkeys.cookies].set_session(response, issued)
    return response


async def registration_options(request: web.Request) -> web.StreamResponse:
    return _options(await request.app[appkeys.passkeys].registration_options(require_user(request)))


async def register(request: web.Request) -> web.StreamResponse:
    """``{"credential": <PublicKeyCredential.toJSON()>, "name": str}`` → 201 with the passkey."""
    user = require_user(request)
    body = await read_object(request)
    name = body.get("name", "")
    if not isinstance(name, str):
        raise InvalidInput("name must be a string")
    passkey = await request.app[appkeys.passkeys].register(user, _credential(body), name)
    return web.json_response({"passkey": passkey_json(passkey)}, status=201)


async def list_passkeys(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    passkeys = await request.app[appkeys.passkeys].of_user(user.user_id)
    return web.json_response({"passkeys": [passkey_json(p) for p in passkeys]})


async def remove(request: web.Request) -> web.StreamResponse:
    """The account page's form (303 back) or ``DELETE /api/passkeys/{id}`` (204)."""
    user = require_user(request)
    await request.app[appkeys.passkeys].remove(user, request.match_info["credential_id"])
    if wants_html(request):
        return web.Response(status=303, headers={"Location": f"{request.app[appkeys.paths].account}?done=passkey"})
    return web.Response(status=204)


async def rename(request: web.Request) -> web.StreamResponse:
    """The account page's form (field ``name``, 303 back) or ``PATCH /api/passkeys/{id}`` (JSON, 204)."""
    user = require_user(request)
    fields = await read_fields(request, "name")
    await request.app[appkeys.passkeys].rename(user, request.match_info["credential_id"], fields["name"])
    if wants_html(request):
        return web.Response(status=303, headers={"Location": f"{request.app[appkeys.paths].account}?done=renamed"})
    return web.Response(status=204)


async def step_up_options(request: web.Request) -> web.StreamResponse:
    return _options(await request.app[appkeys.passkeys].step_up_options(require_user(request)))


async def step_up(request: web.Request) -> web.StreamResponse:
    """``{"credential": ..., "next": path}``: the session's auth time becomes now (confirm.stepped_up)."""
    user = require_user(request)
    body = await read_object(request)
    next_raw = body.get("next")
    next_path = request.app[appkeys.paths].safe_next(next_raw if isinstance(next_raw, str) else None)
    issued = await request.app[appkeys.passkeys].step_up(user, _credential(body))
    return stepped_up(request, issued, next_path)

