"""Redis memory per live session: create N sessions the way sign-in does and read ``used_memory``.

Run: ``.venv/bin/python bench/memory.py [N]`` (default 100000). Starts its own redis-server on a unix
socket in a temporary directory, so nothing else is measured; prints bytes per session.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.clock import system_clock
from service.core.devices import describe
from service.storage.embedded import find_redis_server
from service.core.refresh_tokens import RefreshTokens
from service.storage.sessions import SessionStore
from service.settings import RedisSettings, SessionSettings
from service.storage.client import KeySpace, connect

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/150.0.0.0 Safari/537.36")


async def measure(url: str, count: int) -> float:
    redis = connect(url, RedisSettings())
    keys = KeySpace("sess:")
    sessions = SessionStore(redis, keys, SessionSettings(), system_clock)
    tokens = RefreshTokens(secrets.token_bytes(32))
    users = [secrets.token_urlsafe(12) for _ in range(count // 2)]  # two sessions a user on average
    for user_id in users:
        await redis.hset(keys.user(user_id), mapping={"name": "u", "hash": "x", "disabled": "0", "created": "0"})
    before = int((await redis.info("memory"))["used_memory"])
    now = time.time()

    async def one(i: int) -> None:
        token = tokens.new(users[i % len(users)], SessionStore.new_id())
        await sessions.create(token, now=now, device=describe(CHROME), ip="203.0.113.7",
                              generation="0")  # a new user's credential generation (storage/users.py)
        await sessions.rotate(token, tokens.successor(token), now=now + 1)  # a rotated session is bigger

    for start in range(0, count, 500):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))
    after = int((await redis.info("memory"))["used_memory"])
    await redis.aclose()
    return (after - before) / count


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    directory = Path(tempfile.mkdtemp(prefix="mem-", dir="/tmp"))
    socket = directory / "r.sock"
    server = subprocess.Popen([find_redis_server(), "--port", "0", "--unixsocket", str(socket), "--save", "",
                               "--appendonly", "no", "--dir", str(directory)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if socket.exists():
                break
            time.sleep(0.02)
        per_session = asyncio.run(measure(f"unix://{socket}", count))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{count} sessions (rotated once each, 2 per user, Chrome user agent): "
          f"{per_session:.0f} bytes of Redis memory per session (target <= 400)")
    return 0 if per_session <= 400 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
