"""scripts/seed_spread.py: the spread of every target metric over evaluation files (one per seed)."""

import json

import pytest
from seed_spread import load_results, spread_table


def write_result(path, median_cm: float, drift_m: float) -> str:
    results = {"reaching_sampled": {"ee_error_median_cm": median_cm, "reached_share": 0.97, "base_drift_m": drift_m,
                                    "falls": 0, "ee_error_p90_cm": 3.0}}  # fmt: skip
    path.write_text(json.dumps({"ckpt_path": "x.pt", "results": results}))
    return str(path)


def test_table_has_each_target_metric_per_file_with_mean_range_and_met_count(tmp_path):
    files = [write_result(tmp_path / "s1.json", 1.5, 0.04), write_result(tmp_path / "s2.json", 2.5, 0.06)]
    table = spread_table(["s1", "s2"], load_results(files))
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["ee_error_median_cm"] == "| ee_error_median_cm | <= 2 | 1.5 | 2.5 | 2 | 1.5-2.5 | 1/2 |"
    assert rows["base_drift_m"].endswith("| 0.05 | 0.04-0.06 | 1/2 |")
    assert rows["falls"].endswith("| 2/2 |") and "ee_error_p90_cm" not in rows  # targets only
    assert "feet_drift_m" not in rows  # the drift's parts only where every file has them


def test_the_parts_of_a_target_metric_follow_it(tmp_path):
    files = [write_result(tmp_path / f"s{i}.json", 1.0, 0.05) for i in (1, 2)]
    for i, path in enumerate(files):
        data = json.loads(open(path).read())
        data["results"]["reaching_sampled"] |= {"feet_drift_m": 0.01 * (i + 1), "lean_m": 0.04}
        open(path, "w").write(json.dumps(data))
    table = spread_table(["s1", "s2"], load_results(files))
    names = [line.split(" | ")[0].strip("| ") for line in table.splitlines() if line.startswith("| ")]
    assert names[names.index("base_drift_m") : names.index("base_drift_m") + 3] == ["base_drift_m", "feet_drift_m",
                                                                                      "lean_m"]  # fmt: skip
    assert "| feet_drift_m |  | 0.01 | 0.02 | 0.015 | 0.01-0.02 |  |" in table


def test_a_file_that_is_not_an_evaluation_is_named(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="notes.json is not a result file of scripts/evaluate.py"):
        load_results([str(bad)])
