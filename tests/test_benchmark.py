"""scripts/benchmark.py: the raw baseline steps the env's own (randomised) model; the stepping section runs."""

import os
import subprocess
import sys

import numpy as np
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
