"""Run a relay node: ``python -m relay --host 127.0.0.1 --port 8081 --node-id relay-1
--public-url http://127.0.0.1:8081 [--redis-url redis://...] [--dev]``.

Without ``--redis-url`` the node runs unregistered (embedded/dev use).
SIGTERM/SIGINT: new sessions are refused, events streams get ``rejoin``, then
uvicorn stops, every peer connection is closed and the node unregisters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from types import FrameType

import uvicorn

from .app import create_app
from .config import ConfigError, NoSdpFilter, config_from_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m relay", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--node-id", default="relay-dev")
    parser.add_argument("--public-url", default=None, help="URL clients reach this node at")
    parser.add_argument("--redis-url", default=None, help="register in this Redis")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="allow running without RELAY_TOKEN_SECRET (fixed, public dev secret)",
    )
    parser.add_argument(
        "--ice-host",
        action="append",
        default=None,
        help="gather host candidates on this address only (repeatable; env RELAY_ICE_HOSTS)",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument(
        "--transcode-all",
        action="store_true",
        help="benchmark baseline: aiortc's stock decode + MediaRelay + encode for everyone",
    )
    parser.add_argument(
        "--forward-frames",
        action="store_true",
        help="benchmark comparison: forward whole frames re-packetized per subscriber "
        "instead of the publisher's RTP packets",
    )
    parser.add_argument(
        "--stock-media-path",
        action="store_true",
        help="benchmark baseline: media packets through aiortc's own queue, receive task "
        "and send coroutines instead of the relay's inline path",
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="uvloop (default): libuv's loop, about half the CPU per wake-up of the "
        "standard one, which is most of a relay's cost; asyncio: the standard loop",
    )
    return parser.parse_args(argv)


class RelayServer(uvicorn.Server):
    """uvicorn, telling the node first when a signal asks it to stop (so open
    events streams end with ``rejoin`` instead of holding the shutdown up), and
    waking once a second instead of ten times: a media relay's CPU goes mostly to
    waking up, and uvicorn's housekeeping (the Date header, once a second) does
    not need more; a signal still stops it at once."""

    #: uvicorn's ``on_tick`` counts tenths of a second
    TICK_SECONDS = 1.0

    def __init__(self, config: uvicorn.Config, node: object) -> None:
        super().__init__(config)
        self.node = node
        self.loop: asyncio.AbstractEventLoop | None = None
        self._exit_asked: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._exit_asked = asyncio.Event()
        step = round(self.TICK_SECONDS * 10)
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + step) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), self.TICK_SECONDS)
            should_exit = await self.on_tick(counter)

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.node.begin_shutdown)  # type: ignore[attr-defined]
        super().handle_exit(sig, frame)
        if self.loop is not None and self._exit_asked is not None:
            self.loop.call_soon_threadsafe(self._exit_asked.set)
        # uvicorn re-raises captured signals once it has stopped; a node that shut
        # down cleanly on request exits 0 instead.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(NoSdpFilter())
    try:
        config = config_from_env(
            node_id=args.node_id,
            public_url=args.public_url or f"http://{args.host}:{args.port}",
            redis_url=args.redis_url,
            dev=args.dev,
            ice_hosts=args.ice_host,
            transcode_all=args.transcode_all or None,
            forward_rtp=False if args.forward_frames else None,
            inline_media=False if args.stock_media_path else None,
        )
    except ConfigError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    server = RelayServer(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level.lower(),
            access_log=not args.no_access_log,
            lifespan="on",
            timeout_graceful_shutdown=5,
            log_config=None,
            loop=args.event_loop,  # uvicorn makes it (uvloop is pinned in requirements)
        ),
        app.state.node,
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
