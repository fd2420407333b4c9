"""The JWKS endpoint: the public keys of the signing ring, so other services can verify access tokens."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys

# Public data, unlike every auth response: caches may keep it a while (the security-headers hook
# leaves this one path's Cache-Control alone). Verifiers should fetch again on meeting an unknown kid.
CACHE_CONTROL = "public, max-age=300"


async def jwks(request: web.Request) -> web.StreamResponse:
    """``{"keys": [...]}``: every key of the ring, public parts only; empty for HS256 (a secret)."""
    body = request.app[appkeys.authenticator].codec.public_jwks()
    return web.json_response(body, headers={"Cache-Control": CACHE_CONTROL})
