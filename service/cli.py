"""The command line: ``cookie-session-service`` (or ``python -m service``) ``[--settings FILE] [serve | users ...
| keys ... | throttle clear ... | backup FILE | config check]``; the only argv parser. What the commands other than
``serve`` do is in ``admin.py``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from . import __version__, admin, logs, loops
from . import settings as settings_module
from .core import keyring
from .errors import ServiceError, SettingsError
from .settings import Settings
from .web.access_log import access_log
from .web.app import create_app
from .workers import supervise

DEFAULT_SETTINGS = Path("settings.toml")
# How the user called us, for --help and hints: the console script, or the module.
PROG = "python -m service" if Path(sys.argv[0]).name == "__main__.py" else Path(sys.argv[0]).name


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script passes none: ``sys.argv`` then)."""
    args = _parser().parse_args(argv)
    try:
        path = args.settings or (DEFAULT_SETTINGS if DEFAULT_SETTINGS.exists() else None)
        if args.command == "config":
            return admin.config_check(path, os.environ)
        settings = settings_module.load(path)
        logs.configure(settings.log.level, actor=None if args.command in (None, "serve") else admin.actor())
        if args.command is None:
            return _serve(settings, path, host=None, port=None, workers=args.workers, reuse_port=False)
        if args.command == "serve":
            return _serve(settings, path, host=args.host, port=args.port, workers=args.workers or args.serve_workers,
                          reuse_port=args.reuse_port)
        if args.command == "keys":
            return admin.keys(settings, args.key_action)
        if args.command == "backup":
            return asyncio.run(admin.backup(settings, args.destination))
        if args.command == "throttle":
            return asyncio.run(admin.with_accounts(settings, lambda accounts: admin.clear_throttle(accounts,
                                                                                               args.target)))
        if args.action == "passkeys":
            return asyncio.run(admin.with_passkeys(settings, args))
        return asyncio.run(admin.with_accounts(settings, admin.users(args)))
    except SettingsError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
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
    # --settings is also taken after the command (`users list --settings FILE`): the last one given wins.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--settings", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = _Commands(parser.add_subparsers(dest="command"), common)
    serve = commands.add_parser("serve", help="run the web service (the default)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", dest="serve_workers", type=_count, default=0,
                       help="worker processes sharing the port with SO_REUSEPORT (default 1)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    users = _Commands(commands.add_parser("users", help="manage users").add_subparsers(dest="action", required=True),
                      common)
    for action, text in (("add", "create a user"), ("passwd", "set a new password; ends their sessions")):
        command = users.add_parser(action, help=text)
        command.add_argument("name")
        command.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    for action, text in (("disable", "forbid sign-in and end every session"), ("enable", "allow sign-in again"),
                         ("remove", "delete the user and end every session")):
        users.add_parser(action, help=text).add_argument("name")
    users.add_parser("list", help="list users")
    mfa = _Commands(users.add_parser("mfa", help="the user's second factor (TOTP)")
                    .add_subparsers(dest="mfa_action", required=True), common)
    mfa.add_parser("reset", help="turn off TOTP and remove the recovery codes (a lost phone); ends every "
                                 "session").add_argument("name")
    passkeys = _Commands(users.add_parser("passkeys", help="a user's passkeys")
                         .add_subparsers(dest="passkey_action", required=True), common)
    passkeys.add_parser("list", help="list a user's passkeys: id, name, created, last used").add_argument("name")
    remove = passkeys.add_parser("remove", help="remove one of a user's passkeys; ends every session of theirs")
    remove.add_argument("name")
    remove.add_argument("id", help="the passkey's id, as `users passkeys list` shows it")
    keys = commands.add_parser("keys", help="rotate and prune the JWT signing keys", description=_KEYS_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = _Commands(keys.add_subparsers(dest="key_action", required=True), common)
    actions.add_parser("rotate", help="make a new signing key; older keys keep verifying")
    actions.add_parser("prune", help="remove old keys once every token they signed has expired")
    actions.add_parser("list", help="list keys: kid, algorithm, created, current")
    throttle = _Commands(commands.add_parser("throttle", help="the failed sign-in windows")
                         .add_subparsers(dest="throttle_action", required=True), common)
    throttle.add_parser("clear", help="forget the failed sign-ins of a username or a client IP address"
                        ).add_argument("target", metavar="NAME|IP")
    commands.add_parser("backup", help="copy the embedded Redis's data and the keys into one tar file, "
                                       "while the service runs").add_argument("destination", type=Path)
    config = _Commands(commands.add_parser("config", help="check the settings")
                       .add_subparsers(dest="config_action", required=True), common)
    config.add_parser("check", help="validate every setting; print the effective ones, secrets masked, and "
                                    "where each came from (exit 2 listing every error)")
    return parser


class _Commands:
    """Subcommands that also take the common options (``--settings``) after their name."""

    def __init__(self, actions: Any, common: argparse.ArgumentParser) -> None:
        self._actions, self._common = actions, common

    def add_parser(self, name: str, **options: Any) -> argparse.ArgumentParser:
        return self._actions.add_parser(name, parents=[self._common], **options)  # type: ignore[no-any-return]


_KEYS_HELP = f"""\
Signing keys live in storage.keys_dir (default <storage.data_dir>/keys), one file per kid. The newest key of the
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
    host = settings.server.host if host is None else host
    port = settings.server.port if port is None else port
    if workers > 1:
        print(f"serving on http://{host}:{port}{settings.server.url_prefix}/ with {workers} workers", flush=True)
        return asyncio.run(supervise(settings, path, host=host, port=port, count=workers))
    app = create_app(settings)  # a missing template directory or key file is not a bind failure
    try:
        # SIGTERM: stop listening, let in-flight requests finish within server.shutdown_timeout, then
        # the cleanup contexts close Redis and stop the embedded server; run_app returns and we exit 0.
        web.run_app(app, host=host, port=port, reuse_port=reuse_port or None, **access_log(settings.log),
                    shutdown_timeout=settings.server.shutdown_timeout,
                    loop=loops.new_event_loop(settings.server.event_loop),
                    print=lambda _: print(f"serving on http://{host}:{port}{settings.server.url_prefix}/", flush=True))
    except OSError as exc:  # the address is taken or not ours: one line, not a traceback
        print(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
