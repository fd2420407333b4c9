"""The JWKS endpoint: the public keys of the signing ring, so other services can verify access tokens."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys


async def jwks(request: web.Request) -> web.StreamResponse:
    """``{"keys": [...]}``: every key of the ring, public parts only; empty for HS256 (a secret)."""
    body = request.app[appkeys.authenticator].codec.public_jwks()
    return web.json_response(body)  # public data: routes.py gives it a max-age
