"""Browser fixtures: Debian's Chromium, driven by Playwright, against the real service on 127.0.0.1.

The service runs in-process with the default cookie settings (``cookies.secure = true``, so the
cookies are ``__Host-access`` and ``__Secure-refresh``) and the test's settable clock, plus two
test-only routes: ``GET /test/form``, a plain page with a form (carrying the session's CSRF token in
a hidden field and in ``<meta name="csrf-token">``, as the service's own pages do), and
``POST /test/echo``, a protected endpoint that records every call it receives.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from service.web import routes
from service.web.app import create_app
from service.clock import SettableClock
from service.web.pipeline import csrf_token, require_user
from service.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
# The flags the machine's Chromium needs as root in a closed network (no sandbox, no GPU, no calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
              "has_touch": True},
}

FORM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="csrf-token" content="{csrf}"><title>Test form</title></head>
<body><form method="post" action="/test/echo"><input type="hidden" name="csrf" value="{csrf}">
<label for="note">Note</label> <input id="note" name="note"> <button type="submit">Send</button>
</form></body></html>
"""


@dataclasses.dataclass
class Service:
    """The running service: its base URL, the clock it reads, and what ``POST /test/echo`` received."""

    base: str
    clock: SettableClock
    settings: Settings
    echoed: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def expire_access_token(self) -> None:
        """Move the service's clock past the lifetime of any access token issued so far."""
        self.clock.advance(self.settings.tokens.access_ttl + 1)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                    timeout=30_000)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def open_page(browser: Browser) -> Callable[[str], Awaitable[Page]]:
    """A page in a fresh browser context (its own cookie jar) at the named viewport."""

    async def open_(viewport: str = "desktop") -> Page:
        context = await browser.new_context(**VIEWPORTS[viewport])
        context.set_default_timeout(10_000)
        return await context.new_page()

    return open_


@pytest.fixture
async def page(open_page: Callable[[str], Awaitable[Page]]) -> Page:
    return await open_page("desktop")


@pytest.fixture
async def service(aiohttp_server: Any, settings: Settings, clock: SettableClock,
                  make_user: Callable[..., Awaitable[Any]]) -> Service:
    """The service with default cookie settings on a free port of 127.0.0.1, and a user Alice."""
    app = create_app(settings, clock=clock)
    echoed: list[dict[str, str]] = []

    async def form(request: web.Request) -> web.StreamResponse:
        page = FORM_PAGE.format(csrf=html.escape(csrf_token(request)))
        return web.Response(text=page, content_type="text/html")

    async def echo(request: web.Request) -> web.StreamResponse:
        user = require_user(request)
        echoed.append({"user": user.username, "content_type": request.content_type,
                       "body": await request.text()})
        return web.json_response({"user": user.username, "calls": len(echoed)})

    routes.add(app, "GET", "/test/form", form, "form")
    routes.add(app, "POST", "/test/echo", echo, "echo")
    server = await aiohttp_server(app, host="127.0.0.1")
    await make_user("Alice")
    return Service(base=f"http://127.0.0.1:{server.port}", clock=clock, settings=settings, echoed=echoed)
