"""Write ``data/tossing.pkl``: a family of throwing-like end-effector target sequences.

    python scripts/make_tossing_data.py [--out data/tossing.pkl] [--count 32] [--seed 0] [--plot data/tossing.png]

Each sequence (policy rate, dt = 0.02 s) holds at the arm's home position, winds up (back and up),
swings forward and up to a release point, follows through, and returns home. Waypoints are in
shoulder-centred spherical coordinates (radius, azimuth, elevation) and joined by minimum-jerk
segments, so the path arcs like a throw. Parameters drawn per sequence: throw azimuth, wind-up
height, release elevation and swing duration (the faster the swing, the harder the throw).
The format is documented in ``legged_gym/utils/sequence_sampler.py``.
"""

from __future__ import annotations

import argparse
import os
import pickle

import numpy as np

DT = 0.02  # [s] policy period
SHOULDER_B = np.array([0.06, 0.0, 0.18])  # [m] arm shoulder from the base origin, base-yaw frame
HOME_B = np.array([0.569, 0.0, 0.421])  # [m] end effector at the arm's home pose (env.robot ee_home_b)


def spherical_to_b(radius: float, azimuth: float, elevation: float) -> np.ndarray:
    """Shoulder-centred spherical coordinates [m, rad, rad] -> base-yaw-frame point [m]."""
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return SHOULDER_B + radius * direction


def b_to_spherical(point: np.ndarray) -> np.ndarray:
    offset = point - SHOULDER_B
    radius = np.linalg.norm(offset)
    return np.array([radius, np.arctan2(offset[1], offset[0]), np.arcsin(offset[2] / radius)])


def min_jerk(start: np.ndarray, end: np.ndarray, duration: float) -> np.ndarray:
    """(T, D) minimum-jerk samples from ``start`` to ``end`` over ``duration`` [s] (end excluded)."""
    s = np.arange(0.0, duration, DT) / duration
    blend = 10 * s**3 - 15 * s**4 + 6 * s**5
    return start + blend[:, None] * (end - start)


def tossing_sequence(rng: np.random.Generator) -> np.ndarray:
    """One (T, 3) target sequence [m], base-yaw frame."""
    azimuth = rng.uniform(-0.6, 0.6)
    swing_s = rng.uniform(0.3, 0.6)
    home = b_to_spherical(HOME_B)
    wind_up = np.array([0.33, azimuth, rng.uniform(0.9, 1.2)])
    release = np.array([0.6, azimuth, rng.uniform(0.3, 0.6)])
    follow = np.array([0.55, azimuth, rng.uniform(0.0, 0.2)])
    waypoints = [(home, 0.5), (home, 0.8), (wind_up, 0.3), (wind_up, swing_s), (release, 0.3), (follow, 1.0)]
    segments = []
    for (start, duration), (end, _) in zip(waypoints, [*waypoints[1:], (home, 0.0)]):
        segments.append(min_jerk(start, end, duration))
    segments.append(np.repeat(home[None], int(0.5 / DT), axis=0))
    spherical = np.concatenate(segments)
    return np.stack([spherical_to_b(*p) for p in spherical])


def plot(sequences: list[np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for seq in sequences:
        axes[0].plot(seq[:, 0], seq[:, 2], lw=0.8)
        axes[1].plot(np.arange(len(seq)) * DT, np.linalg.norm(np.gradient(seq, DT, axis=0), axis=1), lw=0.8)
    axes[0].set(xlabel="x [m] (forward)", ylabel="z [m] (up)", title="tossing targets, side view (base-yaw frame)")
    axes[0].set_aspect("equal")
    axes[1].set(xlabel="time [s]", ylabel="target speed [m/s]", title="target speed")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data/tossing.pkl")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="also write a PNG preview here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sequences = [tossing_sequence(rng).astype(np.float32) for _ in range(args.count)]
    payload = {
        "format": "ee_target_sequences",
        "version": 1,
        "dt": DT,
        "frame": "base_yaw",
        "sequences": sequences,
        "names": [f"toss_{i:02d}" for i in range(args.count)],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        pickle.dump(payload, f, protocol=4)
    print(f"wrote {args.out}: {args.count} sequences, {sum(len(s) for s in sequences) * DT:.1f} s in all")
    if args.plot:
        plot(sequences, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
