"""What the operator's commands do, other than ``serve``: ``users``, ``keys``, ``throttle clear``,
``backup`` and ``config check``. ``cli.py`` parses the arguments and calls one of these.

Results are printed on stdout for the operator. Every change is also logged as a JSON event on stderr
(``cli.py`` stamps each with ``actor``, the account that ran it), like the service's own events, so that it reaches the same
log pipeline when run under systemd, cron or ``kubectl exec``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, get_type_hints

from . import settings as settings_module
from . import sources
from .clock import system_clock
from .core import keyring
from .core.accounts import Accounts
from .errors import NotFound, SettingsError, UserError
from .settings import Duration, Secret, Settings
from .storage import backup as backups
from .storage import schema
from .storage.client import KeySpace, Redis
from .web.app import build_authenticator, build_passkeys, open_redis

log = logging.getLogger("service.admin")


def actor() -> str:
    """Who ran the command: the account name, for the audit trail."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (containers)
        return f"uid {os.getuid()}"


def keys(settings: Settings, action: str) -> int:
    directory = settings.storage.keys
    algorithm = settings.tokens.algorithm
    if action == "rotate":
        try:
            kid = keyring.add_key(directory, algorithm)
        except OSError as exc:
            raise SettingsError("storage.keys_dir", f"cannot write a key in {directory}: {exc.strerror}") from None
        older = len(_ring(directory, settings).keys) - 1
        log.info("key_rotated", extra={"event": "key_rotated", "kid": kid})
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
            log.info("key_pruned", extra={"event": "key_pruned", "kid": key.kid})
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


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Redis]:
    """The service's Redis, the embedded one started for the command if no service runs it."""
    redis, embedded = open_redis(settings)
    if embedded is not None:
        await embedded.start()
    try:
        yield redis
    finally:
        await redis.aclose()
        if embedded is not None:
            await embedded.stop()


async def with_accounts(settings: Settings, action: Callable[[Accounts], Awaitable[None]]) -> int:
    """Run ``action`` against the service's Redis."""
    async with _store(settings) as redis:
        try:
            await schema.check(redis, KeySpace(settings.redis.key_prefix))
            await action(Accounts(build_authenticator(settings, redis, system_clock)))
            return 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


def users(args: argparse.Namespace) -> Callable[[Accounts], Awaitable[None]]:
    """The ``users`` action ``args.action`` with its arguments, ready for :func:`with_accounts`."""
    chosen = _USER_ACTIONS[args.action]
    return lambda accounts: chosen(accounts, args)


async def _add(accounts: Accounts, args: argparse.Namespace) -> None:
    user = await accounts.create(args.name, _read_password(args.password_stdin, accounts), now=time.time())
    print(f"created user {user.name} (id {user.id})")


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
        print(f"{user.name}\t{user.id}\t{state}\tcreated {created} UTC\t{account.sessions} session(s)")


async def _mfa(accounts: Accounts, args: argparse.Namespace) -> None:
    user, was_on, ended = await accounts.reset_mfa(args.name)  # args.mfa_action is "reset", the only one
    state = "two-step sign-in turned off" if was_on else "two-step sign-in was not on"
    print(f"{state} for {user.name}; {ended} session(s) ended")


_USER_ACTIONS: dict[str, Callable[[Accounts, argparse.Namespace], Awaitable[None]]] = {
    "add": _add, "passwd": _passwd, "disable": _disable, "enable": _enable, "remove": _remove, "list": _list,
    "mfa": _mfa,
}


async def with_passkeys(settings: Settings, args: argparse.Namespace) -> int:
    """``users passkeys list NAME`` and ``users passkeys remove NAME ID`` against the service's Redis."""
    async with _store(settings) as redis:
        try:
            await schema.check(redis, KeySpace(settings.redis.key_prefix))
            auth = build_authenticator(settings, redis, system_clock)
            passkeys = build_passkeys(settings, redis, auth, system_clock)
            user = await Accounts(auth).require(args.name)
            if args.passkey_action == "list":
                for passkey in await passkeys.of_user(user.id):
                    used = _utc(passkey.last_used) if passkey.last_used else "never"
                    print(f"{passkey.id}\t{passkey.name}\tcreated {_utc(passkey.created)}\tlast used {used}\t"
                          f"{'backed up' if passkey.backed_up else 'not backed up'}")
                return 0
            try:
                ended = await passkeys.remove_for(user, args.id)
            except NotFound:
                raise UserError(f"{user.name} has no passkey {args.id!r}") from None
            print(f"removed passkey {args.id} of {user.name}; {ended} session(s) ended")
            return 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1


async def clear_throttle(accounts: Accounts, target: str) -> None:
    scope, held = await accounts.clear_throttle(target)
    what = f"client {target}" if scope == "ip" else f"username {target!r}"
    print(f"cleared {held} failed sign-in(s) counted against {what}")


async def backup(settings: Settings, destination: Path) -> int:
    """A hot copy of the embedded Redis's data and the keys into ``destination`` (see storage/backup.py)."""
    if settings.redis.url:
        raise SettingsError("redis.url", "backup copies the embedded Redis; back up this server with its own "
                                         "tools (its AOF or RDB) and copy storage.keys_dir")
    async with _store(settings) as redis:
        names = await backups.write(redis, settings.storage.data_dir, settings.storage.keys, destination)
    log.info("backup_written", extra={"event": "backup_written", "path": str(destination), "count": len(names)})
    print(f"wrote {destination}: {', '.join(names)}; restore it with "
          f"`tar -xpf {destination} -C <empty storage.data_dir>` while no service runs on that directory")
    return 0


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


def config_check(path: Path | None, environ: Mapping[str, str]) -> int:
    """Validate every source and print the effective settings, secrets masked, with where each came from.

    Exits 2 listing every problem (``SettingsError`` carries them all); 0 with the table otherwise.
    """
    layers = sources.gather(path, environ)
    settings = settings_module.resolve(layers)
    ring = keyring.load(settings.storage.keys, settings.tokens.algorithm)  # a corrupt key file stops startup too
    rows = _describe(settings, layers)
    width = max(len(key) + len(value) for key, value, _ in rows) + 3
    for key, value, origin in rows:
        print(f"{key} = {value}".ljust(width) + f"# {origin}")
    keys = f"{len(ring.keys)} signing key(s)" if ring else "no signing key yet (the first start makes one)"
    print(f"settings are valid ({path or 'no settings file'}); {keys} in {settings.storage.keys}", file=sys.stderr)
    return 0


def _describe(settings: Settings, layers: sources.Layers) -> list[tuple[str, str, str]]:
    """``(key, value, origin)`` for every setting, secrets masked: what ``config check`` prints."""
    rows = []
    for section in get_type_hints(Settings):
        group = getattr(settings, section)
        for field in dataclasses.fields(group):
            key, value = f"{section}.{field.name}", getattr(group, field.name)
            shown = ('"********"' if value else '""') if isinstance(value, Secret) else _toml(value)
            rows.append((key, shown, str(layers.origin(key))))
    return rows


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return f'"{value:.15g}s"'
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
