"""Offline analysis of a training run: figures and a Markdown summary from its TensorBoard logs.

    python scripts/analyze.py logs/<experiment>/<run> [--out <dir>]

Writes into ``<run>/analysis/`` (or ``--out``): gate entropy by window over training, mean gate
weights, task x expert selection heatmaps, task x task gradient-cosine heatmaps over time,
conflict curves against the noise floor, and ``summary.md``. Tag families a run did not log are
skipped with a note. Definitions: rsl_rl_moe/diagnostics/analysis.py, which reads the tags through the
schema the writers build them with (rsl_rl_moe/diagnostics/tags.py).
"""

from __future__ import annotations

import argparse
import sys

from rsl_rl_moe.diagnostics.analysis import NoEventFileError, analyze_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run folder holding the TensorBoard event files, e.g. logs/<exp>/<run>")
    parser.add_argument("--out", default=None, help="output folder (default: <run_dir>/analysis)")
    args = parser.parse_args(argv)
    try:
        summary = analyze_run(args.run_dir, args.out)
    except NoEventFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {summary}")


if __name__ == "__main__":
    main()
