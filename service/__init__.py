"""Cookie sessions over JWT for aiohttp.

The public API, for an app that embeds the service and adds its own pages behind the same checks::

    import service
    from aiohttp import web

    async def reports(request: web.Request) -> web.Response:
        user = service.require_user(request)   # an AccessClaims: .username, .user_id, .session_id, ...
        return web.Response(text=f"Reports for {user.username}")

    app = service.create_app(service.load_settings())
    service.add_route(app, "GET", "/reports", reports, "reports")
    web.run_app(app, host="127.0.0.1", port=8080)

Names are imported on first use, so ``import service`` (and ``python -m service --version``) loads
neither aiohttp nor Redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core.access_tokens import AccessClaims
    from .settings import Settings
    from .settings import load as load_settings
    from .web.app import create_app
    from .web.pipeline import csrf_token, require_user
    from .web.routes import add as add_route

__all__ = ["AccessClaims", "Settings", "__version__", "add_route", "create_app", "csrf_token", "load_settings",
           "require_user"]

# public name -> (module, attribute)
_EXPORTS = {
    "AccessClaims": (".core.access_tokens", "AccessClaims"),
    "Settings": (".settings", "Settings"),
    "load_settings": (".settings", "load"),
    "create_app": (".web.app", "create_app"),
    "csrf_token": (".web.pipeline", "csrf_token"),
    "require_user": (".web.pipeline", "require_user"),
    "add_route": (".web.routes", "add"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'service' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
