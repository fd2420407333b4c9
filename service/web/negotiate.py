"""What a request wants and who sent it: HTML or JSON, form or JSON body, user agent and address."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from ..core.auth import Client
from ..errors import InvalidInput


def wants_html(request: web.BaseRequest) -> bool:
    """Browsers navigating get pages and redirects; ``fetch()`` and API clients get JSON and 401s.

    Authelia's rule: a navigation, or an Accept that names text/html, is a page request.
    """
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def client(request: web.BaseRequest) -> Client:
    """Raises :class:`InvalidInput` when a trusted proxy's ``X-Forwarded-For`` named no IP address."""
    remote = request.remote or ""  # '' over a unix socket
    if remote:
        try:
            ipaddress.ip_address(remote)
        except ValueError:
            raise InvalidInput("X-Forwarded-For does not end in an IP address") from None
    return Client(user_agent=text(request.headers.get("User-Agent", "")[:256]) or "", ip=remote)


def text(value: str) -> str | None:
    """``value`` if it is valid Unicode text; None if it holds lone surrogates, which is how invalid
    UTF-8 in headers and cookies reaches us (``surrogateescape``), and what JSON's ``"\\ud800"`` gives."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


async def form(request: web.BaseRequest) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The parsed form body (aiohttp caches it).

    Raises:
        InvalidInput: a broken multipart body, or a form that is not valid UTF-8.
    """
    try:
        return await request.post()
    except (ValueError, UnicodeDecodeError):  # aiohttp's multipart and urlencoded parsers
        raise InvalidInput("the form body cannot be read") from None


async def read_fields(request: web.BaseRequest, *names: str, flags: Mapping[str, bool] | None = None) -> dict[str, str]:
    """The named string fields of a form or JSON body; missing ones are empty. Each of ``flags`` is a
    checkbox (in a form: present and not "0", "off" or "false"; an unchecked box is absent) or a JSON
    boolean (absent: the default it maps to), read as "1" or "".

    Raises:
        InvalidInput: the body is not a form or a JSON object, is too large, or a field is not a string.
    """
    body: dict[str, Any]
    if request.content_type == "application/json":
        body = await _json_object(request)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body = dict(await form(request))
    else:
        raise InvalidInput("send a form or JSON")
    values = {name: body.get(name, "") for name in names}
    json_body = request.content_type == "application/json"
    for name, default in (flags or {}).items():
        values[name] = _flag(body.get(name, default if json_body else False))
    if not all(isinstance(v, str) for v in values.values()):
        raise InvalidInput("fields must be strings")
    if not all(text(v) is not None for v in values.values()):
        raise InvalidInput("fields must be valid Unicode text")
    return values


async def read_object(request: web.BaseRequest) -> dict[str, Any]:
    """A JSON object body (a WebAuthn ceremony's answer nests objects, which :func:`read_fields` refuses).

    Raises:
        InvalidInput: the body is not JSON, not an object, or not valid Unicode.
    """
    if request.content_type != "application/json":
        raise InvalidInput("send JSON")
    body = await _json_object(request)
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):  # lone surrogates ("\ud800"), or too deep to write again
        raise InvalidInput("the body must be valid Unicode text") from None
    return body


async def _json_object(request: web.BaseRequest) -> dict[str, Any]:
    try:
        body: Any = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _flag(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, str):
        return "" if value.strip().lower() in ("", "0", "off", "false") else "1"
    raise InvalidInput("a checkbox field must be true or false")
