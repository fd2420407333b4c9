"""``storage.keys_dir``: the secrets apart from the data directory, so they can sit on a read-only secret
mount that the service, once they exist, only ever reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.settings import Settings
from tests.support.sign_in import login


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in directory.iterdir()}


async def test_secrets_live_in_keys_dir_and_a_running_service_never_writes_there(
        make_settings: Callable[..., Settings], make_client: Any, make_user: Any, tmp_path: Path) -> None:
    keys_dir = tmp_path / "mounted-keys"
    settings = make_settings(storage={"keys_dir": str(keys_dir)})
    first = await make_client(of=settings)  # the first start makes them, where keys_dir says
    await make_user("alice", of=settings)
    await login(first, "alice")
    assert {"refresh.key", "csrf.key"} <= set(snapshot(keys_dir))
    assert any(name.endswith(".pem") for name in snapshot(keys_dir))
    assert not (settings.storage.data_dir / "keys").exists()
    before = snapshot(keys_dir)
    keys_dir.chmod(0o500)
    try:
        second = await make_client(of=settings)  # another instance, sharing the same mounted secrets
        body = await login(second, "alice")
        async with second.get("/api/me") as response:
            assert response.status == 200
            assert (await response.json())["session"] == body["session"]
        first.session.cookie_jar.clear()
        first.session.cookie_jar.update_cookies({m.key: m for m in second.session.cookie_jar})
        async with first.get("/api/me") as response:  # the same keys verify on both instances
            assert response.status == 200
            assert (await response.json())["session"] == body["session"]
    finally:
        keys_dir.chmod(0o700)
    assert snapshot(keys_dir) == before
