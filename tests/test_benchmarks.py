"""Every benchmark script still starts: its imports follow the code they measure (a moved function once broke
one unnoticed, since benchmarks are run by hand). `--help` parses the options and exits before any work."""

from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integrations.stripe.repository.counts import object_counts
from metrics.dbapi import reader_of
from tests.support.stripe_world import build_world
from worker.demo.stripe_server import FakeStripe

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# tap_stripe_run.py runs inside tap-stripe's own virtualenv; scratch.py is a helper module, not a script
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in ("tap_stripe_run.py", "scratch.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_benchmark_starts(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert "usage:" in done.stdout


def test_the_tap_bench_runs_our_side_against_a_small_account(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond `--help`: our full sync and the tap's start date, as tap_stripe_bench.py runs them (its call
    into a repository once broke on a changed signature, which `--help` never reaches). The tap itself needs
    a virtualenv of its own (README) and is left out here."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("tap_stripe_bench")
    world = build_world(customers=5, months=2)
    with FakeStripe(world) as server:
        _, _, requests, engine, account_id = bench.ours(server.url, "tap-bench-test")
        day = bench.start_date(server.url, engine, account_id)
    created = [
        o["created"]
        for kind in ("customer", "product", "price")
        for o in world.collections[kind].by_id.values()
    ]
    oldest = datetime.fromtimestamp(min(created) - 86400, UTC)
    assert requests > 0 and day == oldest.strftime("%Y-%m-%dT00:00:00Z")


def test_the_tap_bench_serves_the_saved_account_of_the_nightly_bench(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--worlds: the comparison runs on the account nightly_bench.py saves (the issue's goal names its
    100,000-customer, 36-month account), generated into that folder the first time and read back after."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("tap_stripe_bench")
    worlds = tmp_path / "worlds"  # made by the bench, as --worlds may name a new folder
    with bench.served(4, str(worlds), 3) as url:
        _, _, requests, engine, account_id = bench.ours(url, "tap-bench-world")
    (saved,) = worlds.glob("*.world")
    assert saved.name.startswith("sample-4x3-")
    with engine.connect() as conn:
        stored = object_counts(reader_of(conn), account_id)
    bench.dropped(engine)
    assert requests > 0 and stored["customers"] == 4
    assert not Path(str(engine.url.database)).parent.exists()  # the run's scratch database is gone


def test_the_tap_bench_compares_the_medians_of_its_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """--repeat: the ratio is of each side's median time, not of one pair of runs, and the run-by-run ratios
    are shown beside it; a single run gives the plain ratio."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("tap_stripe_bench")
    ours = [(2.0, 1.9), (4.0, 3.8), (2.5, 2.4)]
    tap = [(20.0, 19.0), (24.0, 23.0), (22.0, 21.0)]
    line = bench.compared(ours, tap)
    # medians 2.5 s and 22.0 s wall (8.8x), 2.4 s and 21.0 s CPU (8.75x); pairs 10.0x, 6.0x, 8.8x
    assert line.startswith("ours: 8.8x faster in wall time, 8.8x in CPU time")
    assert "medians of 3 runs each; run by run 6.0-10.0x" in line
    assert bench.compared([(3.0, 3.0)], [(21.0, 20.0)]) == (
        "ours: 7.0x faster in wall time, 6.7x in CPU time (goal >= 8x)"
    )


def test_the_nightly_bench_takes_each_steps_median_time_and_highest_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--repeat: a size's table is the median time of each cell over its runs and the highest peak (memory
    is a bound); the counts are one for every size or one per size."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("nightly_bench")

    def run(first: float, peak: float) -> dict[str, dict[str, tuple[float, float, str]]]:
        return {"sync": {night: (first, peak, f"{first}") for night in bench.NIGHTS}}

    merged = bench.median_table([run(9.0, 100.0), run(5.0, 180.0), run(7.0, 120.0)])
    assert merged["sync"]["first"] == (7.0, 180.0, "7.0")
    assert bench.repeats("3", [1500, 6000]) == [3, 3]
    assert bench.repeats("5,1", [6000, 100000]) == [5, 1]
    with pytest.raises(SystemExit):
        bench.repeats("5,5,1", [6000, 100000])
