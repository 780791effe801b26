"""`python -m bench.power` (part of `make bench`) runs and prints what issue 8 asks of it: the
controller's cost per site per cycle and how many sites one process manages every 5 s — on a
few sites in a temporary SQLite database, so the benchmark cannot rot unnoticed. Figures are
not asserted (timings are noise on a shared machine), only that they are printed and sane."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_the_power_benchmark_prints_cost_per_site_and_sites_per_process():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.power", "--sites", "3", "--cycles", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "3 sites × 4 chargers, 3 in session" in out
    first = re.search(r"first cycle [\d.]+ s, (\d+) profiles", out)
    # Every charger: failsafe and max profile; every session: its limit.
    assert first is not None and int(first.group(1)) == 3 * (4 * 2 + 3)
    per_site = re.search(r"per site: +([\d.]+) ms wall, ([\d.]+) ms CPU per cycle", out)
    assert per_site is not None and float(per_site.group(2)) > 0
    sites = re.search(r"sites per process every 5 s: ([\d,]+) by wall time", out)
    assert sites is not None and int(sites.group(1).replace(",", "")) > 0
