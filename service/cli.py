"""The command line: ``cookie-session-service`` (or ``python -m service``) ``[--settings FILE] [serve | users ...
| keys ...]``; the only argv parser."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from . import __version__, logs, loops
from . import settings as settings_module
from .clock import system_clock
from .core import keyring
from .core.accounts import Accounts
from .errors import ServiceError, SettingsError, UserError
from .settings import Settings
from .web.app import build_authenticator, create_app, open_redis
from .workers import supervise

DEFAULT_SETTINGS = Path("settings.toml")
# How the user called us, for --help and hints: the console script, or the module.
PROG = "python -m service" if Path(sys.argv[0]).name == "__main__.py" else Path(sys.argv[0]).name


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script passes none: ``sys.argv`` then)."""
    args = _parser().parse_args(argv)
    try:
        path = args.settings or (DEFAULT_SETTINGS if DEFAULT_SETTINGS.exists() else None)
        settings = settings_module.load(path)
        if args.command is None:
            return _serve(settings, path, host=None, port=None, workers=args.workers, reuse_port=False)
        if args.command == "serve":
            return _serve(settings, path, host=args.host, port=args.port, workers=args.workers or args.serve_workers,
                          reuse_port=args.reuse_port)
        if args.command == "keys":
            return _keys(settings, args.key_action)
        return asyncio.run(_users(settings, args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a data directory we may not write, a settings file we may not read
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Cookie sessions over JWT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--settings", type=Path, help="settings file (default: ./settings.toml if present)")
    parser.add_argument("--workers", type=_count, default=0, help="worker processes sharing the port (default 1)")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the web service (the default)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", dest="serve_workers", type=_count, default=0,
                       help="worker processes sharing the port with SO_REUSEPORT (default 1)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    for action, text in (("add", "create a user"), ("passwd", "set a new password; ends their sessions")):
        command = users.add_parser(action, help=text)
        command.add_argument("name")
        command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    for action, text in (("disable", "forbid sign-in and end every session"), ("enable", "allow sign-in again"),
                         ("remove", "delete the user and end every session")):
        users.add_parser(action, help=text).add_argument("name")
    users.add_parser("list", help="list users")
    keys = commands.add_parser("keys", help="rotate and prune the JWT signing keys", description=_KEYS_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = keys.add_subparsers(dest="key_action", required=True)
    actions.add_parser("rotate", help="make a new signing key; older keys keep verifying")
    actions.add_parser("prune", help="remove old keys once every token they signed has expired")
    actions.add_parser("list", help="list keys: kid, algorithm, created, current")
    return parser


_KEYS_HELP = f"""\
Signing keys live in <storage.data_dir>/keys, one file per kid. The newest key of the
configured tokens.algorithm signs access tokens; every key verifies them.

No restart is needed: a running instance re-reads keys/ at most every {keyring.RELOAD_INTERVAL:g} s while
requests come in, so within {keyring.RELOAD_INTERVAL:g} s of `keys rotate` it signs with the new key.
Instances that keep their own copy of keys/ need the new file copied in. Run `keys prune`
once tokens.access_ttl + tokens.leeway have passed; it keeps every key a live token may need."""


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 64")
    return int(text)


def _serve(settings: Settings, path: Path | None, *, host: str | None, port: int | None, workers: int,
           reuse_port: bool) -> int:
    logs.configure()
    host = settings.server.host if host is None else host
    port = settings.server.port if port is None else port
    if workers > 1:
        print(f"serving on http://{host}:{port}{settings.server.url_prefix}/ with {workers} workers", flush=True)
        return asyncio.run(supervise(settings, path, host=host, port=port, count=workers))
    app = create_app(settings)  # a missing template directory or key file is not a bind failure
    try:
        # SIGTERM: stop listening, let in-flight requests finish within server.shutdown_timeout, then
        # the cleanup contexts close Redis and stop the embedded server; run_app returns and we exit 0.
        web.run_app(app, host=host, port=port, access_log=None, reuse_port=reuse_port or None,
                    shutdown_timeout=settings.server.shutdown_timeout,
                    loop=loops.new_event_loop(settings.server.event_loop),
                    print=lambda _: print(f"serving on http://{host}:{port}{settings.server.url_prefix}/", flush=True))
    except OSError as exc:  # the address is taken or not ours: one line, not a traceback
        print(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _keys(settings: Settings, action: str) -> int:
    directory = settings.storage.data_dir / "keys"
    algorithm = settings.tokens.algorithm
    if action == "rotate":
        try:
            kid = keyring.add_key(directory, algorithm)
        except OSError as exc:
            raise SettingsError("storage.data_dir", f"cannot write a key in {directory}: {exc.strerror}") from None
        older = len(_ring(directory, settings).keys) - 1
        print(f"new signing key {kid} ({algorithm}); {older} older key(s) still verify")
        print(f"running instances sign with it within {keyring.RELOAD_INTERVAL:g} s; "
              f"run `keys prune` after tokens.access_ttl ({settings.tokens.access_ttl:g} s)")
        return 0
    ring = _ring(directory, settings)
    if action == "list":
        for key in ring.keys:
            state = "current" if key is ring.current else "verifies"
            print(f"{key.kid}\t{key.algorithm}\tcreated {_utc(key.created)}\t{state}")
        return 0
    return _prune(directory, ring, settings)


def _prune(directory: Path, ring: keyring.KeyRing, settings: Settings) -> int:
    now = time.time()
    lifetime = settings.tokens.access_ttl + settings.tokens.leeway
    removed = 0
    for key, until in keyring.retired(ring, token_lifetime=lifetime):
        if until < now:
            keyring.remove_key(directory, key)
            removed += 1
            print(f"removed {key.kid}: every token it signed expired by {_utc(until)}")
        else:
            print(f"kept {key.kid}: tokens it signed may be valid until {_utc(until)}")
    print(f"kept {ring.current.kid}: current")
    print(f"{removed} key(s) removed, {len(ring.keys) - removed} kept")
    return 0


def _ring(directory: Path, settings: Settings) -> keyring.KeyRing:
    ring = keyring.load(directory, settings.tokens.algorithm)
    if ring is None:
        raise UserError(f"no {settings.tokens.algorithm} signing keys in {directory} yet "
                        "(the service makes the first one when it starts)")
    return ring


def _utc(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


async def _users(settings: Settings, args: argparse.Namespace) -> int:
    redis, embedded = open_redis(settings)
    if embedded is not None:
        await embedded.start()
    try:
        accounts = Accounts(build_authenticator(settings, redis, system_clock))
        await _ACTIONS[args.action](accounts, args)
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
        if embedded is not None:
            await embedded.stop()


async def _add(accounts: Accounts, args: argparse.Namespace) -> None:
    user = await accounts.create(args.name, _read_password(args.password_stdin, accounts), now=time.time())
    print(f"created user {user.name}")


async def _passwd(accounts: Accounts, args: argparse.Namespace) -> None:
    # The user is looked up before the password is asked for: a typo in the name fails at once.
    await accounts.require(args.name)
    user, ended = await accounts.set_password(args.name, _read_password(args.password_stdin, accounts))
    print(f"password changed for {user.name}; {ended} session(s) ended")


async def _disable(accounts: Accounts, args: argparse.Namespace) -> None:
    user, ended = await accounts.disable(args.name)
    print(f"disabled {user.name}; {ended} session(s) ended")


async def _enable(accounts: Accounts, args: argparse.Namespace) -> None:
    user = await accounts.enable(args.name)
    print(f"enabled {user.name}")


async def _remove(accounts: Accounts, args: argparse.Namespace) -> None:
    user, ended = await accounts.remove(args.name)
    print(f"removed {user.name}; {ended} session(s) ended")


async def _list(accounts: Accounts, args: argparse.Namespace) -> None:
    for account in await accounts.all():
        user = account.user
        state = "disabled" if user.disabled else "active"
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(user.created))
        print(f"{user.name}\t{state}\tcreated {created} UTC\t{account.sessions} session(s)")


_ACTIONS: dict[str, Callable[[Accounts, argparse.Namespace], Awaitable[None]]] = {
    "add": _add, "passwd": _passwd, "disable": _disable, "enable": _enable, "remove": _remove, "list": _list,
}


def _read_password(from_stdin: bool, accounts: Accounts) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise UserError("the passwords do not match")
    else:
        raise UserError("no terminal to ask for a password: use --password-stdin")
    accounts.check_policy(password)
    return password
