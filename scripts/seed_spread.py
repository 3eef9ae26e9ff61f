"""The spread of every target metric over seeds: is a recipe robust, or one lucky seed?

    python scripts/seed_spread.py resources/checkpoints/eval/recipes/arm_v9_s{1,2,3}.json

Reads the result files of ``scripts/evaluate.py`` (one per seed, same protocol) and prints a Markdown table per
result section: each target metric (:data:`legged_gym.utils.evaluation.TARGETS`) per file, its mean, min-max, and
how many files meet the target, followed by the metrics that explain it (:data:`~legged_gym.utils.evaluation.PARTS`,
where every file has them). ``--out F`` also writes the table to ``F``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from legged_gym.utils.evaluation import PARTS, TARGETS, target_verdicts  # noqa: E402


def load_results(paths: list[str]) -> list[dict]:
    """``[results]`` of each evaluation file (``{section: {metric: value}}``); a file without results is an error."""
    results = []
    for path in paths:
        try:
            with open(path) as f:
                results.append(json.load(f)["results"])
        except (OSError, ValueError, KeyError) as exc:
            raise SystemExit(f"error: {path} is not a result file of scripts/evaluate.py ({exc!r})") from None
    return results


def spread_table(labels: list[str], results: list[dict]) -> str:
    """Markdown: per section present in every file, one row per target metric with the per-file values, mean,
    min-max and ``met/total``, then its parts (``PARTS``, where every file has them); sections without targets (e.g.
    ``reaching_sequence``) list their median metrics."""
    lines = []
    sections = [s for s in results[0] if all(s in r for r in results)]
    for section in sections:
        metrics = list(TARGETS.get(section, {})) or [k for k in results[0][section] if k.endswith("_cm")]
        metrics = [
            shown
            for metric in metrics
            for shown in (metric, *(p for p in PARTS.get(metric, ()) if all(p in r[section] for r in results)))
        ]
        lines += [
            f"**{section}**",
            "",
            "| metric | target | " + " | ".join(labels) + " | mean | min-max | met |",
            "|---|---|" + "---|" * len(labels) + "---|---|---|",
        ]
        for metric in metrics:
            values = np.array([float(r[section][metric]) for r in results])
            op, bound = TARGETS.get(section, {}).get(metric, ("", None))
            met = (
                f"{sum(target_verdicts(section, {metric: v})[metric] for v in values)}/{len(values)}"
                if bound is not None
                else ""
            )
            target = f"{op} {bound:g}" if bound is not None else ""
            lines.append(
                f"| {metric} | {target} | "
                + " | ".join(f"{v:.3g}" for v in values)
                + f" | {values.mean():.3g} | {values.min():.3g}-{values.max():.3g} | {met} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="result files of scripts/evaluate.py, one per seed")
    parser.add_argument("--labels", nargs="*", help="column names (default: the file names)")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    labels = args.labels or [os.path.splitext(os.path.basename(p))[0] for p in args.files]
    if len(labels) != len(args.files):
        raise SystemExit(f"error: {len(labels)} --labels for {len(args.files)} files")
    table = spread_table(labels, load_results(args.files))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
