"""HTML pages and the form endpoints behind them: login, logout, the signed-in home page."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from ...core.auth import Issued
from .. import appkeys
from ..negotiate import client, read_fields, wants_html
from ..pipeline import csrf_token, require_user


async def login_form(request: web.Request) -> web.StreamResponse:
    paths = request.app[appkeys.paths]
    next_path = paths.safe_next(request.query.get("next"))
    if request[appkeys.auth_state].user is not None:
        return web.Response(status=303, headers={"Location": next_path})
    cookies = request.app[appkeys.cookies]
    nonces = cookies.read_login_nonces(request)  # any of them passes the CSRF check
    nonce = nonces[-1] if nonces else request.app[appkeys.csrf].new_nonce()
    context = {"next": next_path, "username": "", "csrf": request.app[appkeys.csrf].for_login(nonce)}
    response = aiohttp_jinja2.render_template("login.html", request, context)
    cookies.set_login_nonce(response, nonce)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    app = request.app
    fields = await read_fields(request, "username", "password", "next", flags={"remember": True})
    next_path = app[appkeys.paths].safe_next(fields["next"] or request.query.get("next"))
    nonces = app[appkeys.cookies].read_login_nonces(request)
    request[appkeys.form_page] = appkeys.FormPage("login.html", {
        "username": fields["username"], "next": next_path, "remember": fields["remember"],
        "csrf": app[appkeys.csrf].for_login(nonces[-1]) if nonces else ""})
    # "Keep me signed in": a form's checkbox; a JSON sign-in is remembered unless it says "remember": false.
    issued = await app[appkeys.authenticator].login(fields["username"], fields["password"], client(request),
                                                    remember=bool(fields["remember"]),
                                                    nonce=nonces[-1] if nonces else None)
    return await signed_in(request, issued, next_path)


async def login_code(request: web.Request) -> web.StreamResponse:
    """The second step of a sign-in with TOTP on: the code (or a recovery code) for the pending sign-in."""
    app = request.app
    fields = await read_fields(request, "pending", "code", "next")
    next_path = app[appkeys.paths].safe_next(fields["next"] or request.query.get("next"))
    nonces = app[appkeys.cookies].read_login_nonces(request)
    request[appkeys.form_page] = appkeys.FormPage("login_code.html", {
        "pending": fields["pending"], "next": next_path,
        "csrf": app[appkeys.csrf].for_login(nonces[-1]) if nonces else ""})
    issued = await app[appkeys.totp].sign_in(fields["pending"], fields["code"], client(request), nonces)
    return await signed_in(request, issued, next_path)


async def signed_in(request: web.Request, issued: Issued, next_path: str) -> web.StreamResponse:
    """A new session, by any factor: the old one of this browser ends, the cookies are set."""
    app = request.app
    state = request[appkeys.auth_state]
    # A new sign-in never inherits the old session (fixation). An expired token ends its session only
    # when the same user signs in again: a stolen expired token must not be a way to sign its owner out.
    previous = state.user
    if state.expired is not None and state.expired.user_id == issued.claims.user_id:
        previous = state.expired
    if previous is not None:
        await app[appkeys.authenticator].logout(previous)
    if request.content_type == "application/json":
        response: web.StreamResponse = web.json_response({
            "user": {"id": issued.claims.user_id, "name": issued.claims.username},
            "session": issued.claims.session_id,
            "access_expires": issued.claims.expires_at,
            "session_expires": int(issued.refresh_expires),
            "remembered": issued.remembered,
            "csrf_token": app[appkeys.csrf].for_session(issued.claims.session_id),
        })
    else:
        response = web.Response(status=303, headers={"Location": next_path})
    app[appkeys.cookies].set_session(response, issued)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    app = request.app
    state = request[appkeys.auth_state]
    claims = state.user or state.expired
    if claims is not None:
        await app[appkeys.authenticator].logout(claims)
    response: web.StreamResponse = (
        web.Response(status=303, headers={"Location": app[appkeys.paths].login})
        if wants_html(request) else web.Response(status=204)
    )
    app[appkeys.cookies].clear_session(response)
    return response


@aiohttp_jinja2.template("home.html")
async def home(request: web.Request) -> dict[str, object]:
    return {"user": require_user(request), "csrf": csrf_token(request)}
