"""The bench suite runs end to end at tiny sizes, so it cannot rot (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")

pytestmark = pytest.mark.skipif(not os.path.exists(RUN), reason="needs the source tree")


def run_bench(out_dir, *args, timeout=300):
    """``bench/run.py --smoke --out out_dir *args`` on the installed (or checked-out) package."""
    import dgmmcore
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)),
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, RUN, "--smoke", "--out", str(out_dir), *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_bench_smoke(tmp_path):
    pytest.importorskip("sklearn")
    res = run_bench(tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (result,) = tmp_path.glob("bench-smoke.json")
    data = json.loads(result.read_text())
    assert data["environment"] and data["benchmarks"] and not data["failed"]


def test_bench_case_filter_runs_only_the_named_cases(tmp_path):
    res = run_bench(tmp_path, "--only", "fit", "--case", "iteration")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    assert result.name == "bench-fit-iteration-smoke.json"
    rows = json.loads(result.read_text())["benchmarks"]["fit"]["rows"]
    cases = {r["case"] for r in rows}
    assert cases and all(c.startswith("iteration") for c in cases), cases


@pytest.mark.parametrize("args, message", [
    (["--case", "iteration"], "add --only fit"),                 # a benchmark without cases
    (["--only", "fit", "--case", "no such case"], "no case label contains"),
])
def test_bench_case_filter_refuses_what_it_cannot_pick(tmp_path, args, message):
    res = run_bench(tmp_path, *args)
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
