"""Run a relay node: ``python -m relay --host 127.0.0.1 --port 8081 --node-id relay-1
--public-url http://127.0.0.1:8081 [--redis-url redis://...] [--dev]``.

Without ``--redis-url`` the node runs unregistered (embedded/dev use).
SIGTERM/SIGINT: new sessions are refused, events streams get ``rejoin``, then
uvicorn stops, every peer connection is closed and the node unregisters.
"""

from __future__ import annotations

import argparse
import asyncio
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
    return parser.parse_args(argv)


class RelayServer(uvicorn.Server):
    """uvicorn, telling the node first when a signal asks it to stop (so open
    events streams end with ``rejoin`` instead of holding the shutdown up)."""

    def __init__(self, config: uvicorn.Config, node: object) -> None:
        super().__init__(config)
        self.node = node
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[override]
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.node.begin_shutdown)  # type: ignore[attr-defined]
        super().handle_exit(sig, frame)
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
        ),
        app.state.node,
    )
    asyncio.run(server.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
