"""Every benchmark script still starts: its imports follow the code they measure (a moved function once broke
one unnoticed, since benchmarks are run by hand). `--help` parses the options and exits before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
