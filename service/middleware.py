"""Middleware: every service error mapped to HTTP in one table, security headers, and authentication
with server-side auto-refresh.

Auto-refresh: a request whose access JWT is authentic but expired, on a route that needs a user,
is answered ``307 → <refresh>?next=<path>``. The refresh endpoint — the only path that receives the
path-scoped refresh cookie — rotates, sets both cookies and answers ``307 → next``. Browsers and
``fetch()`` follow 307 replaying method and body, so navigations, form POSTs and API calls all
survive expiry, and the original request reaches its handler exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware

from . import appkeys
from .auth import Authenticator
from .cookies import CookiePolicy
from .csrf import FIELD, HEADER, CsrfTokens, is_cross_site
from .errors import (AuthenticationRequired, CredentialsError, CsrfRejected, InvalidInput, RefreshFailed,
                     ServiceError, StoreUnavailable, Throttled, TokenError, TokenExpired)
from .logs import current_request_id, request_id_from
from .metrics import Metrics
from .negotiate import wants_html
from .paths import Paths
from .tokens import AccessClaims

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("service")

_SAFE_METHODS = frozenset({"GET", "HEAD"})
_NO_SIDE_EFFECTS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def require_user(request: web.Request) -> AccessClaims:
    """The signed-in user, or :class:`AuthenticationRequired` (refreshable if the token just expired)."""
    state = request[appkeys.auth_state]
    if state.user is not None:
        return state.user
    raise AuthenticationRequired("not signed in", refreshable=state.expired is not None)


def auth_middleware(auth: Authenticator, cookies: CookiePolicy, paths: Paths, csrf: CsrfTokens) -> Middleware:
    """Attach an :class:`~service.appkeys.AuthState` to every request that is not for static files,
    then refuse unsafe requests from other sites, and signed-in ones without their session's token.

    Authentication and CSRF share one middleware because the CSRF check needs the session and every
    middleware layer costs about a tenth of a bare handler's throughput (``make bench``).
    """
    static = paths.static + "/"

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        state = appkeys.AuthState()
        path = request.path
        skip = path.startswith(static) or path in paths.anonymous
        token = None if skip else cookies.read_access(request)
        if token is not None:
            try:
                state = appkeys.AuthState(user=await auth.authenticate(token))
            except TokenExpired as expired:
                state = appkeys.AuthState(expired=expired.claims)  # type: ignore[arg-type]
            except (TokenError, AuthenticationRequired):
                state = appkeys.AuthState(stale=True)
        request[appkeys.auth_state] = state
        if request.method not in _NO_SIDE_EFFECTS:
            await _check_csrf(request, csrf, cookies, paths)
        return await handler(request)

    return authenticate


def csrf_token(request: web.Request) -> str:
    """The token a page's forms and scripts must send back with unsafe requests ('' if signed out)."""
    state = request[appkeys.auth_state]
    claims = state.user or state.expired
    return request.app[appkeys.csrf].for_session(claims.session_id) if claims else ""


async def _check_csrf(request: web.Request, tokens: CsrfTokens, cookies: CookiePolicy, paths: Paths) -> None:
    own_origin = f"{request.scheme}://{request.host}"
    if is_cross_site(request.headers.get("Sec-Fetch-Site"), request.headers.get("Origin"), own_origin):
        raise CsrfRejected("cross-site request")
    if request.path == paths.refresh:
        return  # only the path-scoped refresh cookie rides here, and the hop replays bodies we never read
    state = request[appkeys.auth_state]
    claims = state.user or state.expired
    if request.path == paths.login:
        if request.content_type not in _FORMS:
            return  # a JSON body cannot be sent cross-site without a CORS preflight, which we never grant
        nonce = cookies.read_login_nonce(request)
        expected = tokens.for_login(nonce) if nonce else None
    elif claims is None:
        return  # no session for a forged request to ride on
    else:
        expected = tokens.for_session(claims.session_id)
    presented = request.headers.get(HEADER)
    if presented is None and request.content_type in _FORMS:
        value = (await request.post()).get(FIELD)
        presented = value if isinstance(value, str) else None
    if not tokens.matches(expected, presented):
        raise CsrfRejected("missing or wrong CSRF token")


def error_middleware(cookies: CookiePolicy, paths: Paths, metrics: Metrics) -> Middleware:
    """The one table from service errors to HTTP answers; unexpected errors become a plain 500.

    Being outermost, it also gives each request its id (for the log and ``X-Request-ID``) and records
    its latency and status by route name — never by raw path, which would make series without bound.
    No middleware layer of their own: each layer costs about a tenth of a bare handler (``make bench``).
    """

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request[appkeys.request_id] = request_id_from(request.headers.get("X-Request-ID"))
        context = current_request_id.set(request_id)
        started = time.perf_counter()
        status = 499  # unless an answer comes: the client went away (nginx's code for it)
        try:
            try:
                response = await handler(request)
            except web.HTTPException:
                raise
            except Exception as exc:  # noqa: BLE001 - every error gets its answer from the table
                response = answer(request, exc)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.request(_route_name(request), request.method, status, time.perf_counter() - started)
            current_request_id.reset(context)

    def answer(request: web.Request, exc: Exception) -> web.StreamResponse:
        """The table: one answer per error family (a plain function: no extra coroutine per request)."""
        if isinstance(exc, AuthenticationRequired):
            return _unauthenticated(request, exc, cookies, paths)
        if isinstance(exc, RefreshFailed):
            return _refresh_failed(request, cookies, paths)
        if isinstance(exc, CredentialsError):
            return _login_failed(request, exc)
        if isinstance(exc, Throttled):
            return _throttled(request, exc)
        if isinstance(exc, InvalidInput):
            return _problem(request, 400, "invalid_input", str(exc))
        if isinstance(exc, CsrfRejected):
            return _problem(request, 403, "csrf", "This form has expired or was sent from another site. "
                                                  "Reload the page and try again.")
        if isinstance(exc, StoreUnavailable):
            metrics.store_error()
            log.warning("store unavailable", exc_info=False)  # once per request: no traceback flood
            response = _problem(request, 503, "unavailable", "The service is briefly unavailable. Try again.")
            response.headers["Retry-After"] = "1"
            return response
        log.error("unmapped service error" if isinstance(exc, ServiceError) else "unhandled error", exc_info=exc)
        return _problem(request, 500, "internal", "Something went wrong.")

    return observe


def _route_name(request: web.Request) -> str:
    """The route's name, else its resource's pattern; ``unmatched`` for 404 and 405 answers."""
    route = request.match_info.route
    if route.name:
        return route.name
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def _unauthenticated(request: web.Request, exc: AuthenticationRequired, cookies: CookiePolicy,
                     paths: Paths) -> web.StreamResponse:
    here = request.path_qs if request.method in _SAFE_METHODS else paths.home
    if exc.refreshable:
        # The original method and body ride along: 307 makes the browser replay both.
        return web.Response(status=307, headers={"Location": paths.refresh_url(request.path_qs)})
    response = _to_login(request, paths, paths.safe_next(here))
    if request[appkeys.auth_state].stale:
        cookies.clear_access(response)
    return response


def _refresh_failed(request: web.Request, cookies: CookiePolicy, paths: Paths) -> web.StreamResponse:
    response = _to_login(request, paths, paths.safe_next(request.query.get("next")))
    cookies.clear_session(response)
    return response


def _to_login(request: web.Request, paths: Paths, next_path: str) -> web.StreamResponse:
    if wants_html(request):
        return web.Response(status=303, headers={"Location": paths.login_url(next_path)})
    return web.json_response({"error": "unauthenticated", "login": paths.login_url(next_path)}, status=401)


def _login_failed(request: web.Request, exc: CredentialsError) -> web.StreamResponse:
    if request.content_type == "application/json" or not wants_html(request):
        return web.json_response({"error": "invalid_credentials", "message": str(exc)}, status=401)
    context = dict(request.get(appkeys.login_attempt, {}), error=str(exc))
    return aiohttp_jinja2.render_template("login.html", request, context, status=401)


def _throttled(request: web.Request, exc: Throttled) -> web.StreamResponse:
    """429 with Retry-After (RFC 6585 §4); the same answer whichever window is full and whoever the user."""
    if request.content_type == "application/json" or not wants_html(request):
        response = web.json_response({"error": "throttled", "retry_after": exc.retry_after, "message": str(exc)},
                                     status=429)
    else:
        context = dict(request.get(appkeys.login_attempt, {}), error=str(exc))
        response = aiohttp_jinja2.render_template("login.html", request, context, status=429)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _problem(request: web.Request, status: int, code: str, message: str) -> web.StreamResponse:
    if wants_html(request):
        return aiohttp_jinja2.render_template("error.html", request, {"status": status, "message": message},
                                              status=status)
    return web.json_response({"error": code, "message": message}, status=status)


def security_headers(paths: Paths, *, hsts: bool) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` hook, so raised and error responses get the headers too.

    HSTS goes out whenever cookies are Secure: browsers honour it only over HTTPS (RFC 6797 §8.1).
    """

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy",
                           "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
        headers.setdefault("X-Frame-Options", "DENY")
        request_id = request.get(appkeys.request_id)
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        if hsts:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if request.path == paths.jwks:  # public keys, not an auth response: the handler's max-age stands
            headers.setdefault("Cache-Control", "no-store")
        elif not request.path.startswith(paths.static + "/"):
            headers["Cache-Control"] = "no-store"

    return add_headers
