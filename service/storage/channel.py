"""The revocation channel: the pub/sub channel on which every ended session is announced.

The session scripts (sessions.py) publish ``"<user id> <session id>"`` on it in the same step that
deletes the session; core/revocations.py listens, and publishes its own heartbeats here to learn
whether it is still hearing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio.client import PubSub

from .client import KeySpace, Redis, pubsub, text, translated


class RevocationChannel:
    """Subscribe to and publish on the revocation channel of one key space."""

    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._channel = keys.revocations()

    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[AsyncIterator[str]]:
        """Subscribe; the block iterates the messages as text until the connection fails.

        Raises:
            StoreUnavailable: on subscribing, or out of the iteration when the connection drops.
        """
        with translated():
            async with await pubsub(self._redis) as subscription:
                await subscription.subscribe(self._channel)
                yield _messages(subscription)

    async def publish(self, message: str) -> None:
        with translated():
            await self._redis.publish(self._channel, message)


async def _messages(subscription: PubSub) -> AsyncIterator[str]:
    async for message in subscription.listen():
        if message.get("type") == "message":
            yield text(message["data"])
