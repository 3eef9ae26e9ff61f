"""Left-right mirror maps of the Go2+Piper env, for rsl_rl's symmetry augmentation / mirror loss.

The mirror is the reflection ``S: y -> -y`` of the trunk (and world) frame. Under it:

- the legs swap sides (FL <-> FR, RL <-> RR); hip abduction joints (axis x) flip sign, thigh and calf
  joints (axis y) keep it;
- the Piper arm sits on the trunk's sagittal plane: a joint whose axis lies in the x-z plane (at the
  default pose) flips sign, one whose axis is along y keeps it. From ``go2_piper.xml`` at the default pose,
  axes in the trunk frame: joint1 (0, 0, 1) flips, joint2 (0, 1, 0) keeps, joint3 (0, 1, 0) keeps,
  joint4 (0.991, 0, -0.134) flips, joint5 (0, 1, 0) keeps, joint6 (0.991, 0, -0.134) flips;
- a polar vector (velocity, position, gravity) ``(x, y, z) -> (x, -y, z)``; an axial vector (angular
  velocity) ``(wx, wy, wz) -> (-wx, wy, -wz)``; the velocity command ``(vx, vy, yaw rate) -> (vx, -vy, -yaw
  rate)``; foot contacts swap sides; scalars (height, friction, mass, gain scale) and task ids are unchanged.

Caveat: the model is symmetric up to one offset: the Piper's link6 sits 1.4165 mm along joint5's axis
(``link6 pos="0 0.091 0.0014165"``), so the end effector is 1.4 mm to the left of the sagittal plane at every
arm pose, and the home EE target (``ee_home_b``, y = 0.0014 m) mirrors to a point 2.8 mm from itself.

Every map here is ``mirrored[..., i] = sign[i] * x[..., perm[i]]``, an involution (``perm[perm] = identity``,
``sign * sign[perm] = 1``), built from :data:`~legged_gym.robots.go2_piper.ACTION_JOINTS`,
:data:`~legged_gym.robots.go2_piper.LEG_NAMES` and the observation tables of :mod:`legged_gym.envs.observations`
(each term's ``mirror`` kind).

Use with rsl_rl 5.5 PPO::

    runner.alg.symmetry_cfg = {"data_augmentation_func": "legged_gym.envs.symmetry:mirror_augmentation",
                               "use_data_augmentation": True, "use_mirror_loss": False, "mirror_loss_coeff": 0.0}
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from legged_gym.envs.observations import CRITIC_OBS_DIM, CRITIC_TERMS, POLICY_OBS_DIM, POLICY_TERMS, ObsTerm
from legged_gym.robots.go2_piper import ACTION_JOINTS, ARM_JOINTS, LEG_NAMES, NUM_ACTIONS

# ---------------------------------------------------------------- joints
LEG_JOINT_SIGN = {"hip": -1.0, "thigh": 1.0, "calf": 1.0}
"""Mirror sign of each leg joint kind: hip axis (1, 0, 0) flips; thigh and calf axes (0, 1, 0) keep."""

ARM_JOINT_SIGN = {"joint1": -1.0, "joint2": 1.0, "joint3": 1.0, "joint4": -1.0, "joint5": 1.0, "joint6": -1.0}
"""Mirror sign of each Piper joint, from its axis in the trunk frame at the default pose (see module doc)."""
assert tuple(ARM_JOINT_SIGN) == ARM_JOINTS


def _mirror_leg(leg: str) -> str:
    """``"FL" -> "FR"``, ``"RR" -> "RL"``."""
    return leg[0] + {"L": "R", "R": "L"}[leg[1]]


def _mirror_joint(name: str) -> tuple[str, float]:
    """The joint a joint maps onto under the mirror, and the sign of its angle: ``"FL_hip_joint" ->
    ("FR_hip_joint", -1)``, ``"joint4" -> ("joint4", -1)``."""
    if name in ARM_JOINT_SIGN:
        return name, ARM_JOINT_SIGN[name]
    leg, kind, _ = name.split("_")
    return f"{_mirror_leg(leg)}_{kind}_joint", LEG_JOINT_SIGN[kind]


_joint_map = [_mirror_joint(name) for name in ACTION_JOINTS]
JOINT_PERM = torch.tensor([ACTION_JOINTS.index(name) for name, _ in _joint_map])
"""(18,) long: mirrored joint vector ``q_m[i] = JOINT_SIGN[i] * q[JOINT_PERM[i]]`` (action order)."""
JOINT_SIGN = torch.tensor([sign for _, sign in _joint_map])
"""(18,) float, +-1, see :data:`JOINT_PERM`."""
FOOT_PERM = torch.tensor([LEG_NAMES.index(_mirror_leg(leg)) for leg in LEG_NAMES])
"""(4,) long: mirrored per-foot vector ``c_m[i] = c[FOOT_PERM[i]]`` (LEG_NAMES order)."""

# ---------------------------------------------------------------- observation layout
_KINDS = {  # kind: (permutation within the segment, signs); "scalar": every column unchanged, any width
    "polar": ([0, 1, 2], [1.0, -1.0, 1.0]),
    "axial": ([0, 1, 2], [-1.0, 1.0, -1.0]),
    "command": ([0, 1, 2], [1.0, -1.0, -1.0]),  # (vx, vy, yaw rate)
    "planar": ([0, 1], [1.0, -1.0]),  # (x, y)
    "feet": (FOOT_PERM.tolist(), [1.0] * len(LEG_NAMES)),
    "joints": (JOINT_PERM.tolist(), JOINT_SIGN.tolist()),
}
UNCHANGED_GROUPS = ("task_id",)
"""Observation groups the mirror leaves as they are."""


def _kind(term: ObsTerm) -> tuple[list[int], list[float]]:
    """The mirror map of one term, within its segment: (permutation, signs)."""
    if term.mirror == "scalar":
        return list(range(term.width)), [1.0] * term.width
    perm, sign = _KINDS[term.mirror]
    if len(perm) != term.width:
        raise AssertionError(f"observation term {term.name!r}: mirror kind {term.mirror!r} is {len(perm)} wide")
    return perm, sign


def _build(terms: tuple[ObsTerm, ...], width: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, slice]]:
    perm, sign, segments, offset = [], [], {}, 0
    for term in terms:
        seg_perm, seg_sign = _kind(term)
        perm += [offset + p for p in seg_perm]
        sign += seg_sign
        segments[term.name] = slice(offset, offset + term.width)
        offset += term.width
    if offset != width:
        raise AssertionError(f"mirror layout is {offset} wide, the observation {width}")
    return torch.tensor(perm), torch.tensor(sign), segments


POLICY_PERM, POLICY_SIGN, POLICY_SEGMENTS = _build(POLICY_TERMS, POLICY_OBS_DIM)
"""(69,) long, (69,) float and name -> slice of the ``policy`` group."""
CRITIC_PERM, CRITIC_SIGN, CRITIC_SEGMENTS = _build(CRITIC_TERMS, CRITIC_OBS_DIM)
"""(16,) long, (16,) float and name -> slice of the ``critic`` group."""
GROUP_MAPS = {
    "policy": (POLICY_PERM, POLICY_SIGN),
    "critic": (CRITIC_PERM, CRITIC_SIGN),
    "own_actions": (JOINT_PERM, torch.ones(NUM_ACTIONS)),
}  # which entries the policy writes: 0/1 per joint
assert JOINT_PERM.numel() == NUM_ACTIONS


def _apply(x: torch.Tensor, perm: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """``sign * x[..., perm]`` on ``x``'s device and dtype (a new tensor)."""
    return x[..., perm.to(x.device)] * sign.to(x.device, x.dtype)


# ---------------------------------------------------------------- maps
def mirror_actions(actions: torch.Tensor) -> torch.Tensor:
    """Mirror image of joint-space vectors in action order (actions, joint positions or velocities).

    Args:
        actions: (..., 18).

    Returns:
        (..., 18), a new tensor.
    """
    if actions.shape[-1] != NUM_ACTIONS:
        raise ValueError(f"expected (..., {NUM_ACTIONS}) actions, got {tuple(actions.shape)}")
    return _apply(actions, JOINT_PERM, JOINT_SIGN)


def mirror_observations(obs: TensorDict) -> TensorDict:
    """Mirror image of an observation TensorDict of this env.

    Args:
        obs: batch ``[...]`` with ``policy`` (..., 69), ``critic`` (..., 16) and ``task_id`` (..., 1); groups
            absent from ``obs`` are skipped.

    Returns:
        A new TensorDict of the same keys, batch size and device: ``policy`` and ``critic`` mirrored (new tensors),
        ``task_id`` the same tensor (not copied).

    Raises:
        KeyError: on a group that has no mirror map (rather than passing it through unmirrored).
    """
    out = {}
    for key, value in obs.items():
        if key in GROUP_MAPS:
            out[key] = _apply(value, *GROUP_MAPS[key])
        elif key in UNCHANGED_GROUPS:
            out[key] = value
        else:
            raise KeyError(f"observation group {key!r} has no mirror map (known: {[*GROUP_MAPS, *UNCHANGED_GROUPS]})")
    return TensorDict(out, batch_size=obs.batch_size, device=obs.device)


def mirror_augmentation(
    env=None, obs: TensorDict | None = None, actions: torch.Tensor | None = None
) -> tuple[TensorDict | None, torch.Tensor | None]:
    """The ``data_augmentation_func`` of rsl_rl 5.5's :class:`~rsl_rl.extensions.Symmetry`: each batch followed
    by its mirror image.

    rsl_rl calls it with keywords only: ``f(env=env, obs=batch.observations, actions=batch.actions)``,
    ``f(env=env, obs=batch.observations, actions=None)`` and ``f(env=env, obs=None, actions=mean_actions)``;
    it infers the number of augmentations from the returned observation batch size (2 here) and reads the
    mirrored samples at ``[original_batch_size:]``.

    Args:
        env: the VecEnv (unused: the maps depend only on the fixed layout).
        obs: TensorDict with batch size [B] (groups as in :func:`mirror_observations`), or None.
        actions: (B, 18), or None.

    Returns:
        ``(obs_aug, actions_aug)``: TensorDict of batch size [2B] (original rows, then mirrored rows) or None
        when ``obs`` is None; (2B, 18) likewise or None when ``actions`` is None.
    """
    obs_aug = None if obs is None else torch.cat([obs, mirror_observations(obs)], dim=0)
    actions_aug = None if actions is None else torch.cat([actions, mirror_actions(actions)], dim=0)
    return obs_aug, actions_aug
