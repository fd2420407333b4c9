"""Signing in over HTTP as page scripts and login forms do, and the CSRF tokens a same-origin page
would hold."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import TestClient

PASSWORD = "correct horse battery staple"

# argon2's cheapest parameters: tests exercise the code path, not the cost.
CHEAP_PASSWORDS = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Accept": "text/html"}


async def login(client: TestClient, name: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    """Sign in with JSON; returns the response body (it includes the session's ``csrf_token``).
    Cookies land in the client's jar."""
    response = await client.post("/login", json={"username": name, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


def hidden_field(page: str, name: str) -> str | None:
    """The value of the hidden input called ``name`` in a rendered page, HTML entities decoded."""
    for tag in re.findall(r"<input\b[^>]*>", page):
        if re.search(rf'\bname="{re.escape(name)}"', tag) and 'type="hidden"' in tag:
            value = re.search(r'\bvalue="([^"]*)"', tag)
            return html.unescape(value.group(1)) if value else ""
    return None


async def login_token(client: TestClient, path: str = "/login") -> str:
    """GET the login page as a browser would: the pre-session nonce cookie lands in the jar and the
    form's hidden ``csrf`` field, bound to it, is returned."""
    response = await client.get(path, headers=NAVIGATE, allow_redirects=False)
    assert response.status == 200, response.status
    token = hidden_field(await response.text(), "csrf")
    assert token, "the login form has no csrf field"
    return token


async def form_login(client: TestClient, name: str | None = "alice", password: str | None = PASSWORD, *,
                     next: str | None = None, headers: dict[str, str] | None = None,
                     allow_redirects: bool = False, path: str = "/login", remember: bool = True) -> Any:
    """Sign in through the login form as a browser does: GET the page, then POST the form with its
    hidden ``csrf`` field, "Keep me signed in" ticked unless ``remember`` is false. ``None`` leaves a
    field out. Returns the POST's response."""
    data = {"csrf": await login_token(client, path)}
    if remember:
        data["remember"] = "1"
    for field, value in (("username", name), ("password", password), ("next", next)):
        if value is not None:
            data[field] = value
    return await client.post(path, data=data, headers=NAVIGATE if headers is None else headers,
                             allow_redirects=allow_redirects)


async def csrf_token(client: TestClient) -> str:
    """The CSRF token of the client's current session, as page scripts read it from ``/api/me``."""
    response = await client.get("/api/me", headers={"Accept": "application/json"})
    assert response.status == 200, response.status
    token = (await response.json())["csrf_token"]
    assert token
    return str(token)
