"""bench/experiments/chain_step.sh passes its arguments on as the two commands it names.

The script is copied into a scratch tree and run with a stand-in ``python`` on PATH that
records its arguments, so nothing is trained and the repository's logs are untouched."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "experiments" / "chain_step.sh"


@pytest.fixture
def run_step(tmp_path):
    tree = tmp_path / "repo"
    (tree / "bench" / "experiments").mkdir(parents=True)
    shutil.copy(SCRIPT, tree / "bench" / "experiments" / "chain_step.sh")
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "calls.txt"
    (shim / "python").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (shim / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}

    def run(*args):
        calls.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(tree / "bench" / "experiments" / "chain_step.sh"),
                               *args], env=env, capture_output=True, text=True)
        lines = calls.read_text().splitlines() if calls.exists() else []
        return done.returncode, done.stderr, lines, tree

    return run


def test_a_step_continues_then_symmetrizes_the_file_it_publishes(run_step):
    code, _, (cont, sym), tree = run_step("32m", "36m", "4000000", "3", "40")
    assert code == 0
    assert cont.split() == [
        "bench/experiments/continue_network.py", "continue",
        "--model", "bench/models/bsds300-600x5x5-32m.npz", "--add-fresh", "4000000",
        "--reuse-paths", "--soft-iters", "3", "--truncation", "20", "--no-search", "--rerank-every", "3",
        "--threads", "2", "--start-keep", "40",
        "--publish", "bench/models/bsds300-600x5x5-36m.npz"]
    assert sym.split() == [
        "bench/experiments/continue_network.py", "symmetrize",
        "--model", "bench/models/bsds300-600x5x5-36m.npz", "--score-float32", "--threads", "2"]
    assert (tree / "bench" / "results" / "logs" / "cont36m.log").exists()
    assert (tree / "bench" / "results" / "logs" / "sym36m.log").exists()


def test_no_fresh_rows_and_a_widened_network_named_in_full(run_step):
    code, _, (cont, sym), _ = run_step("36m", "bsds300-800x5x5-36m", "0", "1+2", "40",
                                       "800,5,5")
    assert code == 0
    words = cont.split()
    assert "--add-fresh" not in words
    # 1+2: one hard iteration, then two truncated ones
    assert words[words.index("--iters") + 1] == "1"
    assert words[words.index("--soft-iters") + 1] == "2"
    assert words[words.index("--model") + 1] == "bench/models/bsds300-600x5x5-36m.npz"
    assert words[words.index("--widen-to") + 1] == "800,5,5"
    assert "--reuse-paths" not in words  # the node search lets rows choose the new copies
    assert words[words.index("--publish") + 1] == "bench/models/bsds300-800x5x5-36m.npz"
    assert sym.split()[3] == "bench/models/bsds300-800x5x5-36m.npz"
    # without START_KEEP the rows start from their exact paths
    code, _, (cont, _), _ = run_step("32m", "32m-it", "0", "1")
    assert code == 0 and cont.split()[cont.split().index("--start-keep") + 1] == "0"
    assert "--iters" not in cont.split()


def test_fresh_rows_ending_in_lr_are_mirrored(run_step):
    code, _, (cont, _), _ = run_step("bsds300-800x5x5-40m", "bsds300-800x5x5-44m",
                                     "4000000lr", "3", "40")
    assert code == 0
    words = cont.split()
    assert "--mirrored" in words and words[words.index("--add-fresh") + 1] == "4000000"
    assert "--reuse-paths" in words


@pytest.mark.parametrize("args", [("32m", "36m", "0"), ("a", "b", "0", "1", "0", "8,5,5", "x")])
def test_wrong_argument_counts_print_the_usage(run_step, args):
    code, err, calls, _ = run_step(*args)
    assert code == 2 and "usage:" in err and calls == []
