"""Static files: only the files that were in the static directories at start, looked up by name.

An allow-list, not a path join: no request path, encoded or not, can reach outside the directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from ...errors import NotFound
from ..appkeys import Handler

_CODE = {".py", ".pyc"}  # the package marker that ships the directory inside the wheel


def files(directories: Sequence[Path]) -> Handler:
    """The handler for ``<static>/{name}``; conditional GET and ranges come with ``FileResponse``.
    A name in more than one directory is served from the first (an operator's overrides)."""
    served = {path.name: path for directory in reversed(directories) for path in directory.iterdir()
              if path.is_file() and path.suffix not in _CODE}

    async def serve(request: web.Request) -> web.StreamResponse:
        path = served.get(request.match_info["name"])
        if path is None:
            raise NotFound("There is no file at this address.")
        return web.FileResponse(path)

    return serve
