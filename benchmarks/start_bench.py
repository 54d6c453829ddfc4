"""Benchmark: how fast `retention --help`, `retention accounts` and `retention status` start. Goal: <= 0.3 s.

Each command runs as a fresh process (as a user types it) on a scratch RETENTION_HOME with one connected
account whose database is already migrated, so the figure is the start-up and the read, not a first-run
migration. Prints the median wall time and the median CPU time (user + system) of each; on a busy machine the
CPU time is the steadier figure.

With RETENTION_DATABASE_URL set (an empty PostgreSQL database, say) the commands read that database instead of
the scratch home's SQLite file.

The commands run with the project's bytecode cached, as an installed package runs (pip compiles it at
install): PYTHONDONTWRITEBYTECODE is dropped for them, so the warm-up run writes it (into the __pycache__
folders git ignores). `--as-is` keeps the environment as it is: with PYTHONDONTWRITEBYTECODE=1 and no cached
bytecode every start compiles the project's modules again.

    .venv/bin/python benchmarks/start_bench.py [--runs N] [--as-is]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RETENTION = Path(sys.executable).with_name("retention")
COMMANDS = (["--help"], ["accounts"], ["status"])
GOAL = 0.3


def _prepare(home: Path, as_is: bool) -> dict[str, str]:
    """A home with its database migrated and one account row (as after `retention connect`)."""
    env = {**os.environ, "RETENTION_HOME": str(home), "COLUMNS": "80"}
    if not as_is:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = (
        "from worker.cli.common import open_db\n"
        "from worker.db import session_scope\n"
        "from worker.models import Account\n"
        "engine = open_db()\n"
        "with session_scope(engine) as s:\n"
        "    s.add(Account(name='acme', stripe_account='acct_1', api_base='https://api.stripe.com',\n"
        "                  reporting_currency='usd', key_encrypted='x', key_mask='sk_test_...abcd'))\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT)
    return env


def _one(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(RETENTION), *args], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--as-is", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as it is set")
    options = parser.parse_args()
    runs = options.runs
    with tempfile.TemporaryDirectory(prefix="start-bench-") as home:
        env = _prepare(Path(home), options.as_is)
        load = os.getloadavg()[0]
        cached = not env.get("PYTHONDONTWRITEBYTECODE")
        print(f"{runs} runs each, load average {load:.1f} on {os.cpu_count()} CPUs; goal <= {GOAL} s")
        print("the project's bytecode", "cached" if cached else "as the environment leaves it (not written)")
        for args in COMMANDS:
            _one(args, env)  # warm the file cache and the bytecode once
            times = [_one(args, env) for _ in range(runs)]
            wall = statistics.median(t[0] for t in times)
            cpu = statistics.median(t[1] for t in times)
            print(f"retention {' '.join(args):<10} median {wall:.2f} s wall, {cpu:.2f} s CPU")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
