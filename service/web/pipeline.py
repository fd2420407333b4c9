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
import time

from aiohttp import web
from multidict import CIMultiDict, istr

from ..core.access_tokens import AccessClaims
from ..core.auth import Authenticator
from ..core.csrf import FIELD, HEADER, CsrfTokens, is_cross_site
from ..errors import AuthenticationRequired, BodyTimeout, CsrfRejected, TokenError, TokenExpired
from ..logs import current_request_id, request_id_from
from ..metrics import Metrics
from . import appkeys
from .answers import answer
from .appkeys import Handler
from .cookies import CookiePolicy
from .negotiate import form, text
from .paths import Paths

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

    1. errors: any service error becomes its answer from the one table (:func:`answers.answer`); the request
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
                response = answer(request, exc, cookies, paths, metrics)
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
    if request.path in paths.json_sign_in:
        # Pre-session, like the login form, but JSON only: a cross-site page cannot send a JSON body
        # without a CORS preflight, which we never grant; its Origin and Sec-Fetch-Site failed above.
        if request.content_type != "application/json":
            raise CsrfRejected("a passkey sign-in sends JSON")
        return
    if request.path in paths.pre_session:
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
