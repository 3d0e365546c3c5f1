"""Start daphne or uvicorn with process-level remedies, to measure them without
touching the service's code.

    python bench/chat/launch.py [options] daphne -b 127.0.0.1 -p 8001 telehealth.asgi:application
    python bench/chat/launch.py [options] uvicorn telehealth.asgi:application --port 8001

Options (each one a candidate remedy the benchmark measures on its own):

``--uvloop``
    daphne only: make the event loop Twisted's asyncio reactor runs on a uvloop
    loop (daphne creates it with ``asyncio.new_event_loop()`` at import, so the
    policy is set first). uvicorn uses uvloop already when it is installed.
``--eager-write``
    daphne only: Twisted's ``transport.write`` only appends to a buffer and
    registers the socket for writability (``epoll_ctl``); the bytes go out on the
    next reactor turn, after another ``epoll_wait``, and the socket is then
    unregistered (``epoll_ctl`` again). With this option a write on a socket with
    nothing buffered is attempted at once with ``send()`` and only the remainder is
    buffered, as asyncio's transports do.
``--quiet-autobahn``
    daphne only: autobahn formats debug-log arguments for every frame sent
    (``hltype(self.sendData)``, ``hlval(self.peer)``) even when debug logging is
    off; this replaces those helpers with ones that skip the ANSI formatting.
``--gc-freeze``
    after start-up, move every object that exists into the permanent generation
    (``gc.freeze()``) and raise the generation-0 threshold, so that full
    collections do not walk Django's and the app's long-lived objects again and
    again (they stop the event loop for tens to hundreds of milliseconds).
``--gc-log FILE``
    append one line per garbage collection of generation 2 with its duration, to
    see whether collections line up with latency spikes.
``--switch-interval S``
    ``sys.setswitchinterval(S)``: how long the event loop's thread may hold the GIL
    while a query thread whose answer has arrived waits for it (CPython: 5 ms).
``--threads N``
    daphne only (``ASGI_THREADS``): size of the event loop's default thread pool,
    where ``database_sync_to_async`` runs the ORM (asyncio's default is
    min(32, CPUs + 4)).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time


def install_gc_log(path: str) -> None:
    """Log every generation-2 collection's duration (ms) with a wall-clock time."""
    started: list[float] = []
    out = open(path, "a", buffering=1)  # open for the process's lifetime

    def callback(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            ms = (time.perf_counter() - started[0]) * 1000
            out.write(f"{time.time():.3f} gen2 {ms:.1f} ms collected={info.get('collected')}\n")

    gc.callbacks.append(callback)


def gc_freeze_later(delay: float = 5.0) -> None:
    """Freeze what start-up allocated once the app is loaded, from a timer thread."""
    import threading

    def freeze() -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)

    threading.Timer(delay, freeze).start()


def patch_eager_write() -> None:
    """Twisted: try ``send()`` at once when nothing is buffered (see the module docstring)."""
    from twisted.internet import abstract, tcp

    original = abstract.FileDescriptor.write

    def write(self, data: bytes) -> None:
        if (
            self.connected
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and len(self.dataBuffer) == self.offset
            and isinstance(self, tcp.Connection)
        ):
            try:
                sent = self.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return original(self, data)
            if sent == len(data):
                return None
            data = data[sent:]
        return original(self, data)

    abstract.FileDescriptor.write = write


def patch_quiet_autobahn() -> None:
    """Skip the per-frame ANSI formatting of debug-log arguments in autobahn."""
    import autobahn.util as util
    import autobahn.websocket.protocol as protocol

    for module in (util, protocol):
        if hasattr(module, "hltype"):
            module.hltype = lambda obj: ""
        if hasattr(module, "hlval"):
            module.hlval = lambda val, color="white", bold=True: ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--eager-write", action="store_true")
    parser.add_argument("--quiet-autobahn", action="store_true")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--gc-log")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--switch-interval", type=float)
    parser.add_argument("server", choices=["daphne", "uvicorn"])
    args, rest = parser.parse_known_args()

    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.gc_log:
        install_gc_log(args.gc_log)
    if args.gc_freeze:
        gc_freeze_later()
    if args.server == "daphne":
        if args.uvloop:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        if args.threads:
            import os

            os.environ["ASGI_THREADS"] = str(args.threads)
        import daphne.server  # noqa: F401  (installs the reactor on the chosen loop)

        if args.eager_write:
            patch_eager_write()
        if args.quiet_autobahn:
            patch_quiet_autobahn()
        from daphne.cli import CommandLineInterface

        sys.argv = ["daphne", *rest]
        CommandLineInterface.entrypoint()
    else:
        from uvicorn.main import main as uvicorn_main

        sys.argv = ["uvicorn", *rest]
        uvicorn_main()


if __name__ == "__main__":
    main()
