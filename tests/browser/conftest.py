"""Browser fixtures: Debian's Chromium, driven by Playwright, against the real service on 127.0.0.1
with the test routes of tests/support/browser.py and the test's settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from service.clock import SettableClock
from service.settings import Settings
from service.web.app import create_app
from tests.support.browser import VIEWPORTS, LiveService, add_test_routes, launched_chromium


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with launched_chromium() as browser:
        yield browser


@pytest.fixture
def open_page(chromium: Browser) -> Callable[[str], Awaitable[Page]]:
    """A page in a fresh browser context (its own cookie jar) at the named viewport."""

    async def open_(viewport: str = "desktop") -> Page:
        context = await chromium.new_context(**VIEWPORTS[viewport])
        context.set_default_timeout(10_000)
        return await context.new_page()

    return open_


@pytest.fixture
async def page(open_page: Callable[[str], Awaitable[Page]]) -> Page:
    return await open_page("desktop")


@pytest.fixture
async def service(aiohttp_server: Any, settings: Settings, clock: SettableClock,
                  make_user: Callable[..., Awaitable[Any]]) -> LiveService:
    """The service with default cookie settings on a free port of 127.0.0.1, and a user Alice."""
    app = create_app(settings, clock=clock)
    echoed: list[dict[str, str]] = []
    add_test_routes(app, echoed)
    server = await aiohttp_server(app, host="127.0.0.1")
    await make_user("Alice")
    return LiveService(base=f"http://127.0.0.1:{server.port}", clock=clock, settings=settings, echoed=echoed)
