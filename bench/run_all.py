"""`make bench`: every benchmark in bench/, each against its baseline in the same run.

Each benchmark is its own script (run alone for more options); this runs them
one after another with their default, few-minute sizes and stops at the first
failure. Pass names to run only some: `python bench/run_all.py chat`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = {
    "seed": ["seed_network.py"],
    "chat": ["chat_bench.py"],
    "relay": ["relay_bench.py"],
    "network": ["network_bench.py"],
    "referral": ["referral_bench.py"],
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    for name in chosen:
        script, *args = BENCHMARKS[name]
        if not (BENCH / script).exists():
            print(f"== {name}: {script} is not here yet, skipped")
            continue
        print(f"\n== {name} ({script})", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(BENCH / script), *args], check=False)
        print(f"== {name}: {time.monotonic() - started:.0f}s, exit {result.returncode}", flush=True)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
