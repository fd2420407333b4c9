"""The command line as an operator runs it: ``python -m service ...`` in a working directory of its
own, with a data dir under a short /tmp path (unix sockets: 107 bytes) and argon2's cheapest cost."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service import settings as settings_module
from service.clock import system_clock
from service.core.auth import Authenticator
from service.storage.client import connect
from service.storage.embedded import EmbeddedRedis
from service.web.app import build_authenticator
from tests.support.redis_server import redis_servers_in
from tests.support.sign_in import PASSWORD


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON events a run logged on stderr, having checked each is an info-level event line."""
    logged = [json.loads(line) for line in result.stderr.splitlines()]
    for entry in logged:
        assert entry["level"] == "info" and "event" in entry, entry
    return logged


@dataclass
class Cli:
    """Runs the CLI in ``cwd``; ``root`` holds everything it writes."""

    root: Path
    cwd: Path
    data_dir: Path

    @property
    def keys(self) -> Path:
        return self.data_dir / "keys"

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment without any ``SERVICE__`` setting, then the data dir, cheap
        passwords and ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICE__")}
        env.update(SERVICE__STORAGE__DATA_DIR=str(self.data_dir), SERVICE__PASSWORDS__MEMORY_COST="64",
                   SERVICE__PASSWORDS__TIME_COST="1", SERVICE__PASSWORDS__PARALLELISM="1")
        env.update(extra)
        return env

    def run(self, *args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """One run with exactly ``env``; nothing checked (a service may be running alongside)."""
        return subprocess.run(
            [sys.executable, "-m", "service", *args], cwd=self.cwd, env=env, text=True, input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None, capture_output=True, timeout=timeout)

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
        """One run with ``env``, or :meth:`env` plus ``settings`` (``SERVICE__...`` variables)."""
        assert env is None or not settings, "pass env or settings, not both"
        result = self.run(*args, env=self.env(**settings) if env is None else env, stdin=stdin, timeout=timeout)
        # Whatever happened, the CLI's own redis-server is gone with it.
        assert not (self.data_dir / "redis.sock").exists(), result.stderr
        assert redis_servers_in(self.root) == []
        return result

    def ok(self, *args: str, **settings: str) -> list[str]:
        """The lines a run prints, having checked that it succeeded and said nothing on stderr."""
        result = self(*args, **settings)
        assert result.returncode == 0, (result.stdout, result.stderr)
        events(result)  # stderr holds the audit events, nothing else
        return result.stdout.splitlines()

    def add(self, name: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        return self("users", "add", name, "--password-stdin", stdin=password + "\n")

    def files(self) -> list[str]:
        """The names in the keys directory."""
        return sorted(path.name for path in self.keys.iterdir())

    @contextlib.asynccontextmanager
    async def core(self) -> AsyncIterator[Authenticator]:
        """The same settings and data as the CLI, to check what it did by signing in."""
        settings = settings_module.load(None, environ=self.env())
        async with EmbeddedRedis(settings.storage.data_dir) as server:
            redis = connect(server.url, settings.redis)
            try:
                yield build_authenticator(settings, redis, system_clock)
            finally:
                await redis.aclose()
