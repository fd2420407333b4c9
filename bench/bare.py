"""The ceiling: a bare aiohttp handler answering ``GET /api/me`` with the JSON shape of the service's
``/api/me`` — no middleware, no cookie, no token, no Redis. Run by ``bench/run.py``:

    python bench/bare.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

# The same keys and value types as the service's /api/me answer.
BODY = {"id": "u_2VmVjW0bS1qf3k8ZkA", "name": "bench", "session": "o1Q0ZbJ9bXh2mWk3", "access_expires": 1767225600}


async def me(request: web.Request) -> web.StreamResponse:
    return web.json_response(BODY)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def main(argv: list[str]) -> None:
    app = web.Application()
    app.router.add_get("/api/me", me)
    app.router.add_get("/healthz", healthz)
    # Like the service (service/cli.py): no access log.
    web.run_app(app, host="127.0.0.1", port=int(argv[0]), access_log=None, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
