"""A client's cookies: a jar that acts like a browser's on http://127.0.0.1, reading one cookie,
copying the jar to replay later, rewriting one value, and what a response sets."""

from __future__ import annotations

from collections.abc import Iterable
from http.cookies import Morsel, SimpleCookie
from typing import Any

from aiohttp import CookieJar
from aiohttp.test_utils import TestClient


def browser_jar(port: int) -> CookieJar:
    """A jar like a browser's for http://127.0.0.1:port, which browsers treat as a secure origin
    (so Secure and ``__Host-`` cookies are kept)."""
    return CookieJar(unsafe=True, treat_as_secure_origin=[f"http://127.0.0.1:{port}"])


def cookie(client: TestClient, name: str) -> str | None:
    """The value of a cookie in the client's jar, by its name without prefix (``access``, ``refresh``)."""
    for morsel in client.session.cookie_jar:
        if morsel.key.split("-", 1)[-1] == name or morsel.key == name:
            return morsel.value
    return None


def jar_snapshot(client: TestClient) -> list[Morsel[str]]:
    """Copies of every cookie in the client's jar, with their Path and Domain, to replay later."""
    return [morsel.copy() for morsel in client.session.cookie_jar]


def with_value(cookies: Iterable[Morsel[str]], name: str, value: str | None) -> list[Morsel[str]]:
    """Copies of ``cookies`` in which the cookie called ``name`` (without prefix) holds ``value``
    (or is left out, for None); its Path, Domain and flags are kept."""
    changed = []
    for morsel in cookies:
        morsel = morsel.copy()
        if morsel.key.split("-", 1)[-1] == name or morsel.key == name:
            if value is None:
                continue
            morsel.set(morsel.key, value, value)
        changed.append(morsel)
    return changed


def set_cookies(response: Any) -> dict[str, Morsel[str]]:
    """The cookies a response sets, by full name, parsed from each raw ``Set-Cookie`` header."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.getall("Set-Cookie", []):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        found.update(parsed)
    return found
