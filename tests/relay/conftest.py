"""Fixtures for the relay node's tests: no Django, no database.

Media stays on loopback: host candidates are pinned to 127.0.0.1 for the
whole run (aioice would otherwise use every interface but loopback), and no
peer connection has a STUN/TURN server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from .util import REDIS_URL


@pytest.fixture(scope="session", autouse=True)
def _loopback_ice() -> Iterator[None]:
    import aioice.ice

    from relay.config import restrict_ice_hosts

    original = aioice.ice.get_host_addresses
    restrict_ice_hosts(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = original


@dataclass
class RelayUnderTest:
    """A relay app served in-process over httpx's ASGI transport."""

    app: Any
    http: httpx.AsyncClient
    pcs: list[Any] = field(default_factory=list)

    @property
    def node(self) -> Any:
        return self.app.state.node

    @property
    def secret(self) -> str:
        return self.node.config.token_secret

    def token(self, room: str, sub: str, caps: list[str], **kwargs: Any) -> str:
        from relay.tokens import issue_token

        return issue_token(self.secret, room=room, sub=sub, caps=caps, **kwargs)

    def auth(self, room: str, sub: str, caps: list[str], **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(room, sub, caps, **kwargs)}"}

    def track(self, pc: Any) -> Any:
        self.pcs.append(pc)
        return pc


@pytest.fixture
async def relay() -> AsyncIterator[RelayUnderTest]:
    from relay.app import create_app
    from relay.config import RelayConfig

    app = create_app(RelayConfig(dev=True, node_id="relay-test", connect_timeout=10))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
        under_test = RelayUnderTest(app, http)
        yield under_test
        await asyncio.gather(*(pc.close() for pc in under_test.pcs), return_exceptions=True)
        await app.state.node.shutdown()
        assert not app.state.node.sessions


def _services_required() -> bool:
    return os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") == "1"


@pytest.fixture
async def redis_db2() -> AsyncIterator[Any]:
    """Redis db 2 (RELAY_TEST_REDIS_URL), emptied before and after the test."""
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        if _services_required():
            pytest.fail(f"Redis is required and unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()
