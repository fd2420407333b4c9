"""The one table from service errors to HTTP answers: pages for browsers, JSON for scripts, and the
form a failed attempt came from shown again with its error."""

from __future__ import annotations

import logging

import aiohttp_jinja2
from aiohttp import web

from ..errors import (
    AuthenticationRequired,
    BodyTimeout,
    CredentialsError,
    CsrfRejected,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    RefreshFailed,
    SecondFactorRequired,
    ServiceError,
    StepUpRequired,
    StoreUnavailable,
    Throttled,
)
from ..metrics import Metrics
from . import appkeys
from .cookies import CookiePolicy
from .negotiate import wants_html
from .paths import Paths

log = logging.getLogger("service")

_SAFE_METHODS = frozenset({"GET", "HEAD"})


def answer(request: web.Request, exc: Exception, cookies: CookiePolicy, paths: Paths,
            metrics: Metrics) -> web.StreamResponse:
    """The one table from service errors to HTTP answers; unexpected errors become a plain 500."""
    if isinstance(exc, AuthenticationRequired):
        return _unauthenticated(request, exc, cookies, paths)
    if isinstance(exc, RefreshFailed):
        return _refresh_failed(request, cookies, paths)
    if isinstance(exc, SecondFactorRequired):
        return _second_factor(request, exc)
    if isinstance(exc, CredentialsError):
        return _login_failed(request, exc)
    if isinstance(exc, Throttled):
        return _throttled(request, exc)
    if isinstance(exc, InvalidInput):
        return _form_again(request, 400, "invalid_input", str(exc))
    if isinstance(exc, StepUpRequired):
        return _step_up(request, exc, paths)
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
    return _form_again(request, 401, "invalid_credentials", str(exc))


def _throttled(request: web.Request, exc: Throttled) -> web.StreamResponse:
    """429 with Retry-After (RFC 6585 §4); the same answer whichever window is full and whoever the user."""
    response = _form_again(request, 429, "throttled", str(exc), retry_after=exc.retry_after)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _form_again(request: web.Request, status: int, code: str, message: str, **extra: object) -> web.StreamResponse:
    """A browser's form that failed is shown again with the message (the handler named its page); a
    script gets JSON; a browser with no form to go back to gets the error page."""
    page = request.get(appkeys.form_page)
    if request.content_type == "application/json" or not wants_html(request):
        return web.json_response({"error": code, **extra, "message": message}, status=status)
    if page is None:
        return _problem(request, status, code, message)
    return aiohttp_jinja2.render_template(page.template, request, dict(page.context, error=message), status=status)


def _second_factor(request: web.Request, exc: SecondFactorRequired) -> web.StreamResponse:
    """The password was right, TOTP is on: the code page (the login form's next and CSRF token carried
    over), or 202 naming the pending sign-in for scripts, which post it back to /login/code."""
    if request.content_type == "application/json" or not wants_html(request):
        return web.json_response({"second_factor": "totp", "pending": exc.pending, "expires": int(exc.expires),
                                  "message": str(exc)}, status=202)
    page = request.get(appkeys.form_page)
    context = {key: value for key, value in (page.context if page else {}).items() if key in ("next", "csrf")}
    return aiohttp_jinja2.render_template("login_code.html", request, dict(context, pending=exc.pending))


def _step_up(request: web.Request, exc: StepUpRequired, paths: Paths) -> web.StreamResponse:
    """To the confirmation page, and back: to this page for a GET, to the account page for a form's POST."""
    back = paths.safe_next(request.path_qs if request.method in _SAFE_METHODS else paths.account)
    if wants_html(request):
        return web.Response(status=303, headers={"Location": paths.confirm_url(back)})
    return web.json_response({"error": "step_up_required", "message": str(exc), "confirm": paths.confirm_url(back)},
                             status=403)


def _problem(request: web.Request, status: int, code: str, message: str, *,
             title: str = "Something went wrong") -> web.StreamResponse:
    if wants_html(request):
        return aiohttp_jinja2.render_template("error.html", request,
                                              {"status": status, "message": message, "title": title}, status=status)
    return web.json_response({"error": code, "message": message}, status=status)
