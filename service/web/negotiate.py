"""What a request wants and who sent it: HTML or JSON, form or JSON body, user agent and address."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

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
    return Client(user_agent=request.headers.get("User-Agent", "")[:256], ip=request.remote or "")


async def read_fields(request: web.BaseRequest, *names: str) -> dict[str, str]:
    """The named string fields of a form or JSON body; missing ones are empty.

    Raises:
        InvalidInput: the body is not a form or a JSON object, is too large, or a field is not a string.
    """
    if request.content_type == "application/json":
        try:
            body: Any = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidInput("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        body = dict(await request.post())
    else:
        raise InvalidInput("send a form or JSON")
    values = {name: body.get(name, "") for name in names}
    if not all(isinstance(v, str) for v in values.values()):
        raise InvalidInput("fields must be strings")
    return values
