"""The request pipeline every route runs through: errors mapped to HTTP in one table, security
headers, authentication with server-side auto-refresh, and CSRF.

Auto-refresh: a request whose access JWT is authentic but expired, on a route that needs a user,
is answered ``307 → <refresh>?next=<path>``. The refresh endpoint — the only path that receives the
path-scoped refresh cookie — rotates, sets both cookies and answers ``307 → next``. Browsers and
``fetch()`` follow 307 replaying method and body, so navigations, form POSTs and API calls all
survive expiry, and the original request reaches its handler exactly once.

Why not aiohttp middleware: the pipeline runs on every page view and API call of the product, and an
aiohttp middleware costs a layer of its own plus aiohttp's ``current_app`` layer, which it adds as
soon as there is one middleware — together more than this whole pipeline (``make bench``). So
``routes.py`` wraps every handler, 404 and 405 answers included, with :meth:`Pipeline.wrap`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp_jinja2
from aiohttp import web
from multidict import CIMultiDict, istr

from ..core.access_tokens import AccessClaims
from ..core.auth import Authenticator
from ..core.csrf import FIELD, HEADER, CsrfTokens, is_cross_site
from ..errors import (
    AuthenticationRequired,
    BodyTimeout,
    CredentialsError,
    CsrfRejected,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    RefreshFailed,
    ServiceError,
    StoreUnavailable,
    Throttled,
    TokenError,
    TokenExpired,
)
from ..logs import current_request_id, request_id_from
from ..metrics import Metrics
from . import appkeys
from .appkeys import Handler
from .cookies import CookiePolicy
from .negotiate import form, text, wants_html
from .paths import Paths

log = logging.getLogger("service")

_SAFE_METHODS = frozenset({"GET", "HEAD"})
_NO_SIDE_EFFECTS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_ANONYMOUS = appkeys.AuthState()
_REQUEST_ID = istr("X-Request-ID")  # istr: looked up and set on every request


def require_user(request: web.Request) -> AccessClaims:
    """The signed-in user, or :class:`AuthenticationRequired` (refreshable if the token just expired)."""
    state = request[appkeys.auth_state]
    if state.user is not None:
        return state.user
    raise AuthenticationRequired("not signed in", refreshable=state.expired is not None)


class Pipeline:
    """Wraps handlers so that, for every request, outermost first:

    1. errors: any service error becomes its answer from the one table (:func:`_answer`); the request
       gets its id (logs, ``X-Request-ID``) and its latency is recorded under the route's name;
    2. security headers go on every answer, raised ones (``web.HTTPException``) and error pages included;
    3. authentication: an :class:`~service.web.appkeys.AuthState` on every request to a route that reads
       the access cookie (an expired token surfaces as the refresh hop, see :func:`require_user`);
    4. CSRF: unsafe requests from other sites, and signed-in ones without their session's token, are refused.
    """

    def __init__(self, auth: Authenticator, cookies: CookiePolicy, paths: Paths, csrf: CsrfTokens,
                 metrics: Metrics, *, hsts: bool, body_timeout: float = 10.0) -> None:
        self._auth = auth
        self._cookies = cookies
        self._paths = paths
        self._csrf = csrf
        self._metrics = metrics
        self._hsts = hsts
        self._body_timeout = body_timeout
        self._wrapped: set[Handler] = set()

    async def check_routes(self, app: web.Application) -> None:
        """On startup: refuse to serve a route outside the pipeline, which would have no
        authentication, no CSRF check and no security headers. Add routes with ``service.add_route``."""
        for route in app.router.routes():
            if route.handler not in self._wrapped:
                raise RuntimeError(f"{route.method} {route.resource.canonical if route.resource else route}: "
                                   "added without the request pipeline; use service.add_route")

    def wrap(self, handler: Handler, *, route: str, cache: str | None = "no-store",
             authenticate: bool = True) -> Handler:
        """``handler`` inside the pipeline. ``route`` labels its metrics; ``cache`` is the
        ``Cache-Control`` of its answers (None: the handler's own); ``authenticate=False`` leaves the
        access cookie unread (static files, keys, health and metrics: no user, and no cost)."""
        auth, cookies, paths, csrf, metrics = self._auth, self._cookies, self._paths, self._csrf, self._metrics
        body_timeout = self._body_timeout
        headers = _security_headers(self._hsts, cache)
        observe = metrics.route(route)

        async def pipeline(request: web.Request) -> web.StreamResponse:
            request_id = request_id_from(request.headers.get(_REQUEST_ID))
            context = current_request_id.set(request_id)
            started = time.perf_counter()
            response: web.StreamResponse
            # Only requests whose body is still arriving pay for the timer: not GETs, not the hot path.
            deadline = _body_deadline(request, body_timeout) if request.body_exists else None
            try:
                state = _ANONYMOUS  # what the access cookie says; inline, as this runs on every request
                token = cookies.read_access(request) if authenticate else None
                if token is not None:
                    try:
                        state = appkeys.AuthState(auth.authenticate_known(token) or await auth.authenticate(token))
                    except TokenExpired as expired:
                        state = appkeys.AuthState(expired=expired.claims)  # type: ignore[arg-type]
                    except (TokenError, AuthenticationRequired):
                        state = appkeys.AuthState(stale=True)
                request[appkeys.auth_state] = state
                if request.method not in _NO_SIDE_EFFECTS:
                    await _check_csrf(request, csrf, cookies, paths)
                response = await handler(request)
            except web.HTTPException as exc:  # aiohttp answers it; it still gets the headers
                exc.headers.extend(headers)
                exc.headers[_REQUEST_ID] = request_id
                observe(request.method, exc.status, time.perf_counter() - started)
                raise
            except Exception as exc:  # noqa: BLE001 - every error gets its answer from the table
                response = _answer(request, exc, cookies, paths, metrics)
            except BaseException:  # cancelled: the client went away (nginx's 499)
                observe(request.method, 499, time.perf_counter() - started)
                raise
            finally:
                current_request_id.reset(context)
                if deadline is not None:
                    deadline.cancel()
            if not response.prepared:  # handlers return their answers; none prepares (streams) its own
                response.headers.extend(headers)
                response.headers[_REQUEST_ID] = request_id
            observe(request.method, response.status, time.perf_counter() - started)
            return response

        self._wrapped.add(pipeline)
        return pipeline


def _body_deadline(request: web.Request, timeout: float) -> asyncio.TimerHandle | None:
    """SECURITY: slow bodies (slowloris on POST). Once ``timeout`` has passed, a body that has not fully
    arrived fails every read of it with :class:`BodyTimeout`: 408, and the connection is closed."""
    content = request.content
    if content.is_eof():
        return None

    def expire() -> None:
        if not content.is_eof():
            content.set_exception(BodyTimeout(f"the body did not arrive within {timeout:g} s"))

    return asyncio.get_running_loop().call_later(timeout, expire)


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
        presented = await _presented_token(request)
        if not any(tokens.matches(tokens.for_login(nonce), presented) for nonce in cookies.read_login_nonces(request)):
            raise CsrfRejected("missing or wrong CSRF token")
        return
    elif claims is None:
        return  # no session for a forged request to ride on
    else:
        expected = tokens.for_session(claims.session_id)
    if not tokens.matches(expected, await _presented_token(request)):
        raise CsrfRejected("missing or wrong CSRF token")


async def _presented_token(request: web.Request) -> str | None:
    presented = request.headers.get(HEADER)
    if presented is None and request.content_type in _FORMS:
        value = (await form(request)).get(FIELD)
        presented = value if isinstance(value, str) else None
    return text(presented) if presented else None


def _answer(request: web.Request, exc: Exception, cookies: CookiePolicy, paths: Paths,
            metrics: Metrics) -> web.StreamResponse:
    """The one table from service errors to HTTP answers; unexpected errors become a plain 500."""
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
    if isinstance(exc, NotFound):
        return _problem(request, 404, "not_found", str(exc), title="Page not found")
    if isinstance(exc, MethodNotAllowed):
        response = _problem(request, 405, "method_not_allowed", str(exc), title="Method not allowed")
        response.headers["Allow"] = ",".join(sorted(exc.allowed))
        return response
    if isinstance(exc, BodyTimeout):
        log.info("body_timeout", extra={"event": "body_timeout", "ip": request.remote})
        response = _problem(request, 408, "body_timeout", "The request body took too long to arrive.")
        response.force_close()  # what is left of that body would be read as the next request
        return response
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


def _problem(request: web.Request, status: int, code: str, message: str, *,
             title: str = "Something went wrong") -> web.StreamResponse:
    if wants_html(request):
        return aiohttp_jinja2.render_template("error.html", request,
                                              {"status": status, "message": message, "title": title}, status=status)
    return web.json_response({"error": code, "message": message}, status=status)


def _security_headers(hsts: bool, cache: str | None) -> CIMultiDict[str]:
    """The headers every answer of a route carries (handlers never set these themselves). HSTS goes
    out whenever cookies are Secure: browsers honour it only over HTTPS (RFC 6797 §8.1)."""
    headers: CIMultiDict[str] = CIMultiDict({
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                   "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        # Not X-Frame-Options: CSP frame-ancestors supersedes it (CSP Level 2, every current browser).
        # SECURITY: COOP severs window.opener links from other origins (ASVS 5.0 3.4.8).
        "Cross-Origin-Opener-Policy": "same-origin",
    })
    if hsts:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    if cache is not None:
        headers["Cache-Control"] = cache
    return headers
