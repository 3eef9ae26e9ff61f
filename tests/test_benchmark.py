"""scripts/benchmark.py: the raw baseline steps the env's own (randomised) model; the stepping section runs."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import REPO_ROOT, make_env

sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import benchmark  # noqa: E402


def test_raw_batch_has_the_envs_randomised_parameters():
    env = make_env(8)  # domain randomisation on (friction, trunk mass, PD gains)
    raw = benchmark.raw_batch_like(env)
    for name in ("geom_friction", "body_mass", "actuator_gainprm", "body_subtreemass"):
        per_env = env.sim.batch.expanded(name)
        assert per_env is not None and np.ptp(per_env, axis=0).max() > 0, f"{name} is not randomised per env"
        np.testing.assert_array_equal(raw.expanded(name), per_env)


def test_stepping_section_prints_one_row_per_size_and_thread_count():
    result = subprocess.run(
        [
            sys.executable,
            "scripts/benchmark.py",
            "--num-envs",
            "8",
            "--steps",
            "5",
            "--repeats",
            "2",
            "--sections",
            "stepping",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("8 ")]
    assert rows, result.stdout
    for row in rows:
        raw, stepped, ratio = (float(x.replace(",", "")) for x in row[2:5])
        low, high = (float(x) for x in "".join(row[5:]).strip("[]").split(","))
        assert raw > 0 and stepped > 0 and low <= ratio <= high


def test_warp_sections_print_positive_rates_and_both_backends_figures():
    """The Warp path (``--sim-device warp-cpu``: the code that runs on a GPU) with tiny settings: one stepping row
    per size with positive rates and a ratio within its range, then the memory, training and experts blocks."""
    pytest.importorskip("mujoco_warp")
    command = [sys.executable, "scripts/benchmark.py", "--sim-device", "warp-cpu", "--num-envs", "4", "8"]
    command += ["--steps", "5", "--repeats", "2", "--train-envs", "16", "--train-iterations", "1", "--eval-envs", "2"]
    result = subprocess.run(
        [*command, "evaluate.duration_s=1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=True
    )
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines if line.split()[:1] in (["4"], ["8"])]
    assert [row[0] for row in rows] == ["4", "8"], result.stdout
    for row in rows:
        rates = [float(x.replace(",", "")) for x in row[1:6]]
        low, high = (float(x) for x in "".join(row[6:8]).strip("[]").split(","))
        assert min(rates) > 0 and 0 < low <= rates[4] <= high, row
    assert "n/a (CPU)" in lines
    summaries = [line for line in lines if line.startswith("summary: ")]
    assert len(summaries) == 3 and "env-steps/s at N=16" in summaries[1], result.stdout  # no memory summary on CPU
    assert re.search(r"targets met .*: cpu \d+/\d+, warp-cpu \d+/\d+$", summaries[2]), result.stdout
    for section, metric in (("locomotion", "falls"), ("reaching_sampled", "base_drift_m")):
        (row,) = [line.split() for line in lines if line.split()[:2] == [section, metric]]
        assert all(float(x) >= 0 for x in row[2:]) and len(row) == 4, row  # cpu and warp-cpu
