"""Upgrades: the data's schema version lives in Redis, is stamped on first use, and data written by a
newer release is refused by the CLI, the service and its readiness probe, and left exactly as it was."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import settings as settings_module
from service.errors import SchemaMismatch
from service.settings import Settings
from service.storage import schema
from service.storage.client import KeySpace, connect
from service.storage.embedded import EmbeddedRedis
from service.web.app import create_app
from tests.support.cli import Cli
from tests.support.sign_in import login


@contextlib.asynccontextmanager
async def data_of(cli: Cli) -> AsyncIterator[Any]:
    """A client on the CLI's embedded Redis, to read and plant the stamp."""
    settings = settings_module.load(None, environ=cli.env())
    async with EmbeddedRedis(settings.storage.data_dir) as server:
        redis = connect(server.url, settings.redis)
        try:
            yield redis
        finally:
            await redis.aclose()


async def test_first_use_stamps_the_current_version(client: TestClient, settings: Settings,
                                                    redis_client: Any) -> None:
    assert await redis_client.get(f"{settings.redis.key_prefix}schema") == str(schema.SCHEMA_VERSION).encode()


async def test_data_from_before_the_stamp_is_taken_as_version_1_migrated_and_still_signs_in(
        settings: Settings, redis_client: Any, make_user: Any,
        make_client: Callable[..., Awaitable[TestClient]]) -> None:
    await make_user("alice")
    await redis_client.delete(f"{settings.redis.key_prefix}schema")  # as an older release left it
    client = await make_client()
    await login(client, "alice")
    assert await redis_client.get(f"{settings.redis.key_prefix}schema") == str(schema.SCHEMA_VERSION).encode()


@pytest.mark.parametrize("stamp", [b"99", b"not-a-version"])
async def test_a_newer_or_foreign_stamp_is_refused_and_left_alone(settings: Settings, redis_client: Any,
                                                                         stamp: bytes) -> None:
    await redis_client.set(f"{settings.redis.key_prefix}schema", stamp)
    with pytest.raises(SchemaMismatch):
        await schema.check(redis_client, KeySpace(settings.redis.key_prefix))
    assert await redis_client.get(f"{settings.redis.key_prefix}schema") == stamp


async def test_an_embedding_app_fails_to_start_on_newer_data_and_cleans_up(settings: Settings,
                                                                           redis_client: Any) -> None:
    await redis_client.set(f"{settings.redis.key_prefix}schema", "99")
    runner = web.AppRunner(create_app(settings, redis=redis_client))
    with pytest.raises(SchemaMismatch):
        await runner.setup()
    await asyncio.wait_for(runner.cleanup(), 10)  # the revocation listener, just started, ends too


async def test_a_migration_step_runs_once_and_stamps_its_version(settings: Settings, redis_client: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeySpace(settings.redis.key_prefix)
    ran: list[int] = []

    async def step(redis: Any, space: KeySpace) -> None:
        ran.append(int(await redis.get(space.schema())))
        await redis.set(f"{space.prefix}moved", "yes")

    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, step)
    await redis_client.set(keys.schema(), current)
    assert await schema.check(redis_client, keys) == current
    assert await schema.check(redis_client, keys) == current + 1  # nothing left to do
    assert ran == [current]
    assert await redis_client.get(keys.schema()) == str(current + 1).encode()
    assert await redis_client.get(f"{keys.prefix}moved") == b"yes"


async def test_the_cli_and_the_service_refuse_newer_data_in_one_line(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with data_of(cli) as redis:
        await redis.set("sess:schema", "3")
    for argv in (("users", "list"), ("serve", "--port", "1")):
        result = cli(*argv, timeout=30)
        assert result.returncode == 1, (argv, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "schema version 3" in errors[0] and "newer release" in errors[0], result.stderr
        assert "Traceback" not in result.stderr
    async with data_of(cli) as redis:
        assert await redis.get("sess:schema") == b"3"
        assert await redis.scard("sess:users") == 1
