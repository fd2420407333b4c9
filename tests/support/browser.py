"""Debian's Chromium driven by Playwright, and what the browser tests serve: the real service on
127.0.0.1 with the default cookie settings (``cookies.secure = true``, so the cookies are
``__Host-access`` and ``__Secure-refresh``) plus two test-only routes: ``GET /test/form``, a plain page
with a form (carrying the session's CSRF token in a hidden field and in ``<meta name="csrf-token">``,
as the service's own pages do), and ``POST /test/echo``, a protected endpoint that records every call
it receives."""

from __future__ import annotations

import contextlib
import dataclasses
import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from service.clock import SettableClock
from service.settings import Settings
from service.web import routes
from service.web.pipeline import csrf_token, require_user
from tests.support.binaries import require_binary

CHROMIUM = Path("/usr/bin/chromium")
# The flags the machine's Chromium needs as root in a closed network (no sandbox, no GPU, no calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # screenshots
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


@contextlib.asynccontextmanager
async def launched_chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Chromium from /usr/bin (Playwright's own builds cannot be downloaded here), closed afterwards."""
    require_binary(CHROMIUM, package="chromium", needed_by="the browser tests")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args],
                                                   timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()


@dataclasses.dataclass
class LiveService:
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


def add_test_routes(app: web.Application, echoed: list[dict[str, str]]) -> None:
    """``GET /test/form`` and ``POST /test/echo``, which appends each call it receives to ``echoed``."""

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


async def submit(page: Page, button: str = "button[type=submit]") -> int:
    """Click ``button`` and wait for the navigation it starts: the status of the page landed on."""
    async with page.expect_navigation() as landed:
        await page.click(button)
    response = await landed.value
    assert response is not None
    return response.status
