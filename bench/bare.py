"""The ceiling: a bare aiohttp handler answering ``GET /api/me`` with the JSON shape of the service's
``/api/me`` — no middleware, no cookie, no token, no Redis. Run by ``python -m bench`` (scenario a,
bench/scenarios.py), which passes the body the service itself answered, so both send the same bytes:

    python bench/bare.py PORT [BODY_JSON]

It runs on the event loop the service would (``SERVICE__SERVER__EVENT_LOOP``: uvloop or asyncio).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from aiohttp import web

from service.loops import new_event_loop

# Without BODY_JSON: the keys and value types of the service's /api/me answer.
BODY: dict[str, Any] = {"id": "u_2VmVjW0bS1qf3k8ZkA", "name": "bench", "session": "o1Q0ZbJ9bXh2mWk3",
                        "access_expires": 1767225600}


async def me(request: web.Request) -> web.StreamResponse:
    return web.json_response(BODY)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        BODY.clear()
        BODY.update(json.loads(argv[1]))
    app = web.Application()
    app.router.add_get("/api/me", me)
    app.router.add_get("/healthz", healthz)
    # Like the service (service/cli.py): no access log.
    loop = new_event_loop(os.environ.get("SERVICE__SERVER__EVENT_LOOP", "uvloop"))
    web.run_app(app, host="127.0.0.1", port=int(argv[0]), access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main(sys.argv[1:])
