"""Copy a training checkpoint into resources/checkpoints/ as a small, frozen-expert file.

    python scripts/ship_expert.py logs/<exp>/<run>/model_500.pt resources/checkpoints/base_expert.pt

Keeps the actor and critic weights and the self-describing ``infos`` (model + env description),
drops the optimizer state (not needed by a frozen expert; halves the size), and records where the
file came from in ``infos["shipped_from"]``. Written atomically; loads with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsl_rl_moe.checkpoint import CheckpointError, is_self_describing, load_checkpoint, save_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a model_<it>.pt written by scripts/train.py")
    parser.add_argument("target", help="where to write the expert, e.g. resources/checkpoints/base_expert.pt")
    args = parser.parse_args()
    try:
        payload = load_checkpoint(args.source, override_hint="the first argument")
        if not is_self_describing(payload):
            raise CheckpointError(
                f"{args.source!r} carries no model description: only files written by scripts/train.py can be shipped"
            )
    except CheckpointError as exc:
        sys.exit(f"error: {exc}")
    payload.pop("optimizer_state_dict", None)
    payload["infos"]["shipped_from"] = {"path": os.path.relpath(args.source), "iteration": int(payload["iter"])}
    save_checkpoint(args.target, payload)
    print(f"wrote {args.target} ({os.path.getsize(args.target) / 1024:.0f} KiB) from iteration {payload['iter']}")


if __name__ == "__main__":
    main()
