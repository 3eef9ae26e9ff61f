"""LeggedRobot: the Go2+Piper vectorised env on the rsl_rl 5.5 VecEnv API.

Observation groups (TensorDict, float32), declared term by term in :mod:`legged_gym.envs.observations`:
``policy`` (N, 69), ``critic`` (N, 16), ``task_id`` (N, 1) and, only with a partner (:meth:`LeggedRobot.set_partner`),
``own_actions`` (N, 18) (read by :class:`rsl_rl_moe.modules.own_actions.OwnActionsMLPModel`).

Devices: every buffer lives on ``env.device``, the simulator's (``env.sim_device``: ``cpu`` is ``mujoco.batch``,
``cuda:N`` MuJoCo Warp, ``warp-cpu`` MuJoCo Warp on the CPU). The per-step math runs once, written against the array
backend ``env.array_backend`` (:mod:`legged_gym.utils.arrays`): numpy views on CPU, torch tensors elsewhere.

Actions (N, 18): joint position offsets; target = default + action_scale * clip(action). A partner policy
(:meth:`LeggedRobot.set_partner`, config ``env.partner``) may write the legs' or the arm's entries in some tasks'
episodes: the other expert moving its limbs while this one learns (composable experts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import attrgetter

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from legged_gym.envs import rewards as reward_terms
from legged_gym.envs.commands import TASK_NAMES, TaskCommands
from legged_gym.envs.observations import (
    CRITIC_OBS_DIM,
    CRITIC_TERMS,
    POLICY_OBS_DIM,
    POLICY_TERMS,
    noise_half_width,
    scale_vector,
)
from legged_gym.robots.go2_piper import ACTION_JOINTS, LEG_NAMES, NUM_ACTIONS, NUM_LEG_ACTIONS, load_robot
from legged_gym.sim import make_backend
from legged_gym.utils.arrays import array_ops
from legged_gym.utils.buffers import ReadOnlyView, bind_buffer, declare_in_place_buffers
from legged_gym.utils.math import StateMath, quat_from_yaw

EPISODE_METRICS = ("return", "lin_vel_error", "ang_vel_error", "ee_error")
NUM_FEET = len(LEG_NAMES)
DERIVED_STATE = {  # name: (shape per env, dtype), written in place by LeggedRobot._refresh_state
    "base_lin_vel_b": ((3,), torch.float32),
    "projected_gravity": ((3,), torch.float32),
    "ee_pos_b": ((3,), torch.float32),
    "joint_pos_rel": ((NUM_ACTIONS,), torch.float32),
    "lin_vel_error": ((2,), torch.float32),
    "yaw_rate_error": ((), torch.float32),
    "ee_error": ((3,), torch.float32),
    "foot_contact": ((NUM_FEET,), torch.bool),
}
STEP_STATE = {  # name: (shape per env, dtype), kept across steps and updated in place by LeggedRobot.step
    "feet_air_time": ((NUM_FEET,), torch.float32),  # [s] since the foot last touched down
    "last_contacts": ((NUM_FEET,), torch.bool),
    "first_contact": ((NUM_FEET,), torch.bool),  # touchdown in this step
    "touchdown_air_time": ((NUM_FEET,), torch.float32),  # [s] air time of this step's touchdowns, 0 elsewhere
    "reset_buf": ((), torch.bool),  # the env ends its episode in this step
    "time_out_buf": ((), torch.bool),  # ... because it reached the maximum episode length
}


LIMB_COLUMNS = {"legs": slice(0, NUM_LEG_ACTIONS), "arm": slice(NUM_LEG_ACTIONS, NUM_ACTIONS)}
"""Action entries of each limb group (action order: the 12 leg joints, then the 6 arm joints)."""

UPDATABLE_CFG = ("rewards", "tasks")
"""Config sections :meth:`LeggedRobot.update_cfg` may change during training."""


def merge_known(target: dict, overrides: dict, path: str) -> None:
    """Merge nested ``overrides`` into ``target`` in place; every key must exist in ``target`` (reward term scales
    too: a term not in the config is a typo), else ValueError naming its dotted path."""
    for key, value in overrides.items():
        if key not in target:
            raise ValueError(f"{path}.{key}: no such setting (known: {sorted(target)})")
        if isinstance(value, dict) and isinstance(target[key], dict):
            merge_known(target[key], value, f"{path}.{key}")
        else:
            target[key] = value


class LeggedRobot(VecEnv):
    """Go2+Piper on flat ground; tasks: locomotion, reaching, loco_reach (see :mod:`legged_gym.envs.commands`).

    Args:
        cfg: the resolved ``env`` config (plain dict), see ``config/env_base/go2_piper.yaml``.

    State that the env reads through array views (``episode_length_buf``, :data:`DERIVED_STATE`,
    :data:`STEP_STATE`) is declared :class:`~legged_gym.utils.buffers.InPlaceBuffer` (below the class):
    assigning it, as rsl_rl's ``learn(init_at_random_ep_len=True)`` and legged_gym-style subclasses do, writes
    into the buffer the views read. The views of the simulator state are read-only attributes.
    """

    base_pos = ReadOnlyView()
    base_quat = ReadOnlyView()
    base_height = ReadOnlyView()
    base_height_column = ReadOnlyView()
    joint_pos = ReadOnlyView()
    base_ang_vel_b = ReadOnlyView()
    joint_vel = ReadOnlyView()
    foot_vel_w = ReadOnlyView()
    foot_pos_w = ReadOnlyView()
    _trunk_touch = ReadOnlyView()
    action_limbs = LIMB_COLUMNS
    """Action columns of each limb (the runner logs each limb's action std: ``Policy/std/<limb>``)."""
    commands = ReadOnlyView(
        "kept once: the env reads its buffers through views; assign its attributes instead "
        "(env.commands.velocity = ..., written in place)"
    )

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.num_envs = int(cfg["num_envs"])
        self.num_actions = NUM_ACTIONS
        self.task_names = list(TASK_NAMES)
        robot = load_robot(cfg["robot"])
        self.sim = make_backend(robot.model, self.num_envs, cfg["sim_device"], cfg.get("nthread", 0))
        self.device = self.sim.device
        self.robot = robot.to(self.device)
        self.ops = array_ops(cfg.get("array_backend", "auto"), self.device)
        self._math = StateMath(self.ops)
        self.decimation = int(cfg["robot"]["decimation"])
        self.dt = self.decimation * float(cfg["robot"]["timestep"])
        self.max_episode_length = math.ceil(cfg["episode_length_s"] / self.dt)
        self.generator = torch.Generator(device=self.device).manual_seed(int(cfg["seed"]))
        self.reward_cfg = cfg["rewards"]
        self.commands = TaskCommands(
            cfg["tasks"], self.robot.ee_home_b, self.num_envs, self.dt, self.generator, self.device, self.ops
        )

        n, device = self.num_envs, self.device
        self.default_joint_pos = self.robot.default_joint_pos
        self.action_scale = torch.tensor(cfg["robot"]["action_scale"], dtype=torch.float32, device=device)
        self._joint_low, self._joint_high = self.robot.joint_range.unbind(dim=1)  # (18,) each [rad]
        limits_mid = self.robot.joint_range.mean(dim=1)
        limits_half = 0.5 * (self.robot.joint_range[:, 1] - self.robot.joint_range[:, 0])
        soft = float(cfg["rewards"]["soft_joint_limit"])
        self.soft_joint_low = limits_mid - soft * limits_half  # (18,) [rad] the joint_pos_limits term's range
        self.soft_joint_high = limits_mid + soft * limits_half
        self.episode_length_buf = torch.zeros(n, dtype=torch.long, device=device)
        self.actions = torch.zeros(n, NUM_ACTIONS, device=device)
        self.joint_pos_target = self.default_joint_pos.repeat(n, 1)  # (N, 18) [rad] PD target of the last step,
        # default + action_scale * action, before the joint limits
        self.last_actions = torch.zeros(n, NUM_ACTIONS, device=device)
        self.last_joint_vel = torch.zeros(n, NUM_ACTIONS, device=device)
        # [m] world xy of the base (N, 2) and of the feet (N, 4, 2) where the base was last told to stand (kept up to
        # date only while a term reading them is weighted: rewards.STAND_ANCHOR_READERS)
        self.stand_anchor_xy = torch.zeros(n, 2, device=device)
        self.stand_anchor_feet_xy = torch.zeros(n, NUM_FEET, 2, device=device)
        self._bind_state_views()
        self._partner_policy: Callable[[TensorDict], torch.Tensor] | None = None

        self._randomize_domain()
        self.reward_names: list[str] = []
        # (K, N) weighted sums per term (rows stack and add faster than columns)
        self.episode_sums = torch.zeros(0, n, device=device)
        self._build_reward_terms()
        # (4, N) per-step sums, EPISODE_METRICS order
        self.episode_metric_sums = torch.zeros(len(EPISODE_METRICS), n, device=device)
        self.episode_metrics = dict(zip(EPISODE_METRICS, self.episode_metric_sums))  # (N,) views of its rows
        self._build_observation_terms()

        self.reset_idx(torch.arange(n, device=device))
        self._refresh_state()
        self.obs = self._compute_observations()

    @property
    def description(self) -> dict:
        """Stored in checkpoints: what an expert trained here expects to read and write."""
        return {
            "name": self.cfg["name"],
            "robot": "go2_piper",
            "action_joints": list(ACTION_JOINTS),
            "task_names": self.task_names,
            "policy_obs_dim": POLICY_OBS_DIM,
            "critic_obs_dim": CRITIC_OBS_DIM,
            "policy_dt": self.dt,
        }

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _check_reward_name(name: str) -> bool:
        if not callable(getattr(reward_terms, name, None)):
            known = sorted(k for k, v in vars(reward_terms).items() if callable(v) and not k.startswith("_"))
            raise ValueError(f"env.rewards.scales.{name}: no such reward term; known terms: {known}")
        return True

    def _build_reward_terms(self) -> None:
        """The weighted reward terms of ``cfg["rewards"]["scales"]`` (non-zero ones, per policy step) and their
        episode sums (rows of terms that stay keep their sums)."""
        scales = {
            name: float(scale) * self.dt
            for name, scale in self.cfg["rewards"]["scales"].items()
            if scale != 0.0 and self._check_reward_name(name)
        }
        # the termination term, if weighted, comes last: it is added after the only-positive clip
        names = sorted(scales, key=lambda name: name == "termination")
        sums = torch.zeros(len(names), self.num_envs, device=self.device)
        for row, name in enumerate(names):
            if name in self.reward_names:
                sums[row] = self.episode_sums[self.reward_names.index(name)]
        self.reward_names, self.episode_sums = names, sums
        self.reward_functions = [getattr(reward_terms, name) for name in names]
        # (K, 1) per policy step
        self.reward_scales = torch.tensor([scales[name] for name in names], device=self.device)[:, None]
        self._termination_weighted = names[-1:] == ["termination"]

    def update_cfg(self, overrides: dict) -> None:
        """Change the reward settings and the task commands during training (a curriculum stage, see
        :mod:`rsl_rl_moe.runners.curriculum`): ``overrides`` is a nested dict merged into ``cfg``, with top-level
        keys among :data:`UPDATABLE_CFG` (``rewards``: any key; ``tasks``: probabilities, command ranges,
        resampling periods). Episodes running go on under the new settings.

        Raises:
            ValueError: a key outside those sections, or one the env's config does not have, named by its path.
        """
        unknown = set(overrides) - set(UPDATABLE_CFG)
        if unknown:
            raise ValueError(
                f"env settings {sorted(unknown)} cannot change during training (only {list(UPDATABLE_CFG)})"
            )
        for section, values in overrides.items():
            merge_known(self.cfg[section], values, f"env.{section}")
        self.reward_cfg = self.cfg["rewards"]
        self._build_reward_terms()
        self.commands.configure(self.cfg["tasks"])

    def set_partner(self, policy: Callable[[TensorDict], torch.Tensor], limbs: str, tasks: Sequence[str]) -> None:
        """Let ``policy`` write the action entries of ``limbs`` in episodes of ``tasks``; the actions passed to
        :meth:`step` write the rest. This is how an expert learns to keep its job while the other expert moves
        the other limbs (the base expert walking under a reaching arm, the arm expert reaching on walking legs),
        and how a per-limb composition of two experts is evaluated.

        Args:
            policy: a frozen policy, observation TensorDict (the groups :meth:`get_observations` returns, the same
                observation the acting policy sees) -> (N, 18) actions; called without gradient once per step.
            limbs: ``"legs"`` (action entries 0-11) or ``"arm"`` (12-17).
            tasks: names among :attr:`task_names`; in other tasks' episodes the acting policy writes every entry.

        Raises:
            ValueError: unknown limbs or task names (naming the ``env.partner`` key).
        """
        if limbs not in LIMB_COLUMNS:
            raise ValueError(f"env.partner.limbs={limbs!r}: must be one of {sorted(LIMB_COLUMNS)}")
        unknown = [task for task in tasks if task not in self.task_names]
        if unknown or not tasks:
            raise ValueError(f"env.partner.tasks={list(tasks)}: must be a non-empty list of {self.task_names}")
        self._partner_policy = policy
        self._partner_tasks = torch.tensor([name in tasks for name in self.task_names], device=self.device)  # (T,)
        self._partner_columns = torch.zeros(NUM_ACTIONS, dtype=torch.bool, device=self.device)
        self._partner_columns[LIMB_COLUMNS[limbs]] = True
        self.obs = self._compute_observations()  # now with the own_actions group

    def _partner_entries(self) -> torch.Tensor:
        """(N, 18) bool: the action entries the partner writes in the next step (its limbs, in its tasks' envs)."""
        return self._partner_tasks[self.commands.task_ids][:, None] & self._partner_columns

    def _with_partner_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(N, 18) clipped ``actions`` with the partner's entries in the envs whose task it drives."""
        mask = self._partner_entries()
        if not bool(mask.any()):
            return actions
        with torch.no_grad():
            partner = self._partner_policy(self.obs).to(self.device, torch.float32)
        clip = self.cfg["robot"]["clip_actions"]
        return torch.where(mask, torch.nan_to_num(partner).clamp(-clip, clip), actions)

    def _randomize_domain(self) -> None:
        """Per-env friction, added trunk mass and PD-gain scale, drawn once at construction."""
        dr = self.cfg["domain_rand"]
        n, all_ids = self.num_envs, torch.arange(self.num_envs, device=self.device)

        def draw(key: str, default: float) -> torch.Tensor:
            low, high = dr[key] if dr["enabled"] else (default, default)
            return low + (high - low) * torch.rand(n, generator=self.generator, device=self.device)

        self.friction = draw("friction_range", 1.0)
        self.added_mass = draw("added_mass_range", 0.0)
        self.gain_scale = draw("gain_scale_range", 1.0)
        self.sim.set_friction(all_ids, self.friction)
        self.sim.set_added_mass(all_ids, self.added_mass)
        self.kp = self.robot.kp * self.gain_scale[:, None]
        self.kd = self.robot.kd * self.gain_scale[:, None]
        self.sim.set_actuator_gains(all_ids, self.kp, self.kd)
        self.torque_limits = torch.tensor(self.cfg["robot"]["torque_limits"], dtype=torch.float32, device=self.device)
        self._push_interval = max(1, round(dr["push_interval_s"] / self.dt))  # [policy steps] between pushes
        self._pushes_enabled = bool(dr["enabled"] and dr["push_robots"])
        self.domain_params = torch.stack([self.friction, self.added_mass, self.gain_scale], dim=1)  # (N, 3)

    def _build_observation_terms(self) -> None:
        """Readers of each group's term sources, their scale vectors, and the policy noise (half-width ``noise_scale``
        (69,), in observation units, and its source: numpy's generator on the numpy array backend, torch's on the
        device otherwise), all from the tables of :mod:`legged_gym.envs.observations`."""
        self._policy_sources = [attrgetter(term.source) for term in POLICY_TERMS]
        self._critic_sources = [attrgetter(term.source) for term in CRITIC_TERMS]
        self._policy_obs_scale = scale_vector(POLICY_TERMS, self.device)
        self._critic_obs_scale = scale_vector(CRITIC_TERMS, self.device)
        observations = self.cfg["observations"]
        if observations["add_noise"]:
            self.noise_scale = noise_half_width(POLICY_TERMS, observations["noise"], self.device)
        else:
            self.noise_scale = torch.zeros(POLICY_OBS_DIM, device=self.device)
        # uniform [0, 1) -> [-half width, half width), as arrays of the array backend
        self._noise_affine = (self.ops.of(2.0 * self.noise_scale), self.ops.of(-self.noise_scale))
        self._noise = torch.zeros(self.num_envs, POLICY_OBS_DIM, device=self.device)
        self._noise_source = self.ops.uniform_source(int(self.cfg["seed"]))

    # ------------------------------------------------------------------ VecEnv API
    def get_observations(self) -> TensorDict:
        return self.obs

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """Apply (N, 18) actions for ``decimation`` physics steps (a partner's entries replacing some, see
        :meth:`set_partner`); auto-reset finished envs.

        A non-finite action entry is applied as 0 (NaN) or the clip value (inf), and counted:
        ``extras["episode"]["nonfinite_actions"]`` is the number of envs whose action had one, this step
        (TensorBoard ``Episode/nonfinite_actions``, the mean per step over the iteration).
        """
        if actions.shape != (self.num_envs, NUM_ACTIONS):
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected ({self.num_envs}, {NUM_ACTIONS})")
        clip = self.cfg["robot"]["clip_actions"]
        actions = actions.detach().to(self.device, torch.float32)
        nonfinite_actions = 0 if bool(actions.isfinite().all()) else int((~actions.isfinite().all(dim=1)).sum())
        self.actions = torch.nan_to_num(actions).clamp(-clip, clip)  # NaN -> 0, +-inf -> +-clip
        if self._partner_policy is not None:
            self.actions = self._with_partner_actions(self.actions)
        self.joint_pos_target = torch.addcmul(self.default_joint_pos, self.action_scale, self.actions)
        self.sim.step(self.joint_pos_target.clamp(self._joint_low, self._joint_high), self.decimation)

        self._arrays["episode_length"] += 1
        self.commands.step()
        self._refresh_state()
        self._update_feet_air_time()
        if reward_terms.STAND_ANCHOR_READERS.intersection(self.reward_names):
            self._update_stand_anchor()
        self._check_termination()
        rewards = self._compute_rewards()

        self.last_actions = self.actions.clone()
        self.last_joint_vel = self.joint_vel.clone()
        extras = {"time_outs": self.time_out_buf.clone(), "episode": {"nonfinite_actions": nonfinite_actions}}
        dones = self.reset_buf.clone()
        self.step_task_ids = self.commands.task_ids.clone()  # the task each env had during this step
        dones_array = self.ops.of(dones)
        if dones_array.any():
            reset_ids = self.ops.as_tensor(self.ops.flatnonzero(dones_array))
            extras["episode"] |= self._episode_log(reset_ids)
            self.reset_idx(reset_ids)
            self._refresh_state()
        self._push_robots()
        self.obs = self._compute_observations()
        return self.obs, rewards, dones, extras

    # ------------------------------------------------------------------ state
    def _bind_state_views(self) -> None:
        """Name the state once: the raw state as views of the simulator's state tensors (which it refreshes in
        place), the derived state (:data:`DERIVED_STATE`) and step state (:data:`STEP_STATE`) as tensors that
        :meth:`_refresh_state` and :meth:`step` write in place, and ``self._arrays``: the array-backend views
        (:attr:`ops`) of all the state the per-step math reads and writes.

        Raw: ``base_pos`` (N, 3) [m] world, ``base_quat`` (N, 4) wxyz, ``base_height`` (N,) [m], ``joint_pos``
        (N, 18) [rad], ``base_ang_vel_b`` (N, 3) [rad/s] base frame, ``joint_vel`` (N, 18) [rad/s], ``foot_vel_w``
        (N, 4, 3) [m/s] world, ``foot_pos_w`` (N, 4, 3) [m] world; private: the trunk touch force [N].
        """
        qpos, qvel, sensors = self.sim.qpos, self.sim.qvel, self.sim.sensordata
        sensor = self.robot.sensor
        self.base_pos = qpos[:, 0:3]
        self.base_quat = qpos[:, 3:7]
        self.base_height = qpos[:, 2]
        self.base_height_column = qpos[:, 2:3]  # (N, 1), for the critic observation
        self.joint_pos = qpos[:, 7:]
        self.base_ang_vel_b = qvel[:, 3:6]
        self.joint_vel = qvel[:, 6:]
        foot_vel = sensors[:, self.robot.sensor_block([f"{leg}_vel" for leg in LEG_NAMES])]
        self.foot_vel_w = foot_vel.unflatten(1, (NUM_FEET, 3))
        foot_pos = sensors[:, self.robot.sensor_block([f"{leg}_pos" for leg in LEG_NAMES])]
        self.foot_pos_w = foot_pos.unflatten(1, (NUM_FEET, 3))
        self._trunk_touch = sensors[:, sensor["trunk_touch"].start]  # (N,)
        state = {
            name: torch.zeros(self.num_envs, *shape, dtype=dtype, device=self.device)
            for name, (shape, dtype) in {**DERIVED_STATE, **STEP_STATE}.items()
        }
        for name, tensor in state.items():
            bind_buffer(self, name, tensor)
        inputs = {
            "qpos": qpos,
            "qvel": qvel,
            "ee_pos_w": sensors[:, sensor["ee_pos"]],
            "foot_touch": sensors[:, self.robot.sensor_block([f"{leg}_touch" for leg in LEG_NAMES])],
            "trunk_touch": self._trunk_touch,
            "episode_length": self.episode_length_buf,
            "default_joint_pos": self.default_joint_pos,
            "velocity_command": self.commands.velocity,
            "ee_target": self.commands.ee_target_b,
            "rotation": torch.zeros(self.num_envs, 3, 3, device=self.device),
        }
        self._arrays = {name: self.ops.of(tensor) for name, tensor in {**inputs, **state}.items()}

    def _refresh_state(self) -> None:
        """Derive from the simulator state and the commands, in place: ``base_lin_vel_b`` (N, 3) [m/s] base frame,
        ``projected_gravity`` (N, 3), ``ee_pos_b`` (N, 3) [m] base-yaw frame from the base origin, ``foot_contact``
        (N, 4) bool, ``joint_pos_rel`` (N, 18) [rad] joint positions relative to the default pose, and the tracking
        errors, command minus state: ``lin_vel_error`` (N, 2) [m/s] base frame, ``yaw_rate_error`` (N,) [rad/s],
        ``ee_error`` (N, 3) [m] base-yaw frame.

        On the array backend's views (see :meth:`_bind_state_views`): these are some twenty tiny elementwise ops,
        which numpy runs several times cheaper than torch on CPU.
        """
        ops, math_, a = self.ops, self._math, self._arrays
        qpos, qvel = a["qpos"], a["qvel"]
        rotation = math_.rotation_matrices(qpos[:, 3:7], out=a["rotation"])  # (N, 3, 3) base -> world
        math_.rotate_inverse(rotation, qvel[:, 0:3], out=a["base_lin_vel_b"])
        ops.negative(rotation[:, 2], out=a["projected_gravity"])  # R^T (0, 0, -1) is minus R's last row
        base_yaw = ops.arctan2(rotation[:, 1, 0], rotation[:, 0, 0])  # heading of the base x axis
        math_.world_to_yaw_frame(base_yaw, a["ee_pos_w"] - qpos[:, 0:3], out=a["ee_pos_b"])
        ops.subtract(qpos[:, 7:], a["default_joint_pos"], out=a["joint_pos_rel"])
        ops.greater(a["foot_touch"], self.cfg["robot"]["contact_force_threshold"], out=a["foot_contact"])
        velocity = a["velocity_command"]
        ops.subtract(velocity[:, :2], a["base_lin_vel_b"][:, :2], out=a["lin_vel_error"])
        ops.subtract(velocity[:, 2], qvel[:, 5], out=a["yaw_rate_error"])  # yaw rate: base frame z
        ops.subtract(a["ee_target"], a["ee_pos_b"], out=a["ee_error"])

    @property
    def estimated_torques(self) -> torch.Tensor:
        """(N, 18) [N*m] servo torques of the PD law at the current state and the last step's target, within the
        torque limits (computed on access: the ``torques`` reward term is the only reader)."""
        torques = torch.addcmul(self.kp * (self.joint_pos_target - self.joint_pos), self.kd, self.joint_vel, value=-1.0)
        return torques.clamp(-self.torque_limits, self.torque_limits)

    def _update_feet_air_time(self) -> None:
        """Once per policy step, in place (on the array backend, as :meth:`_refresh_state`): air time per foot, and
        touchdowns (``first_contact``) with their air time (``touchdown_air_time``). A contact in this step or the
        last one counts (the touch sensor flickers on touchdown)."""
        ops, a = self.ops, self._arrays
        air = a["feet_air_time"]
        contact_filt = a["foot_contact"] | a["last_contacts"]
        ops.logical_and(air > 0.0, contact_filt, out=a["first_contact"])
        air += self.dt
        ops.multiply(air, a["first_contact"], out=a["touchdown_air_time"])
        ops.copyto(air, 0.0, where=contact_filt)
        ops.copyto(a["last_contacts"], a["foot_contact"])

    def _update_stand_anchor(self) -> None:
        """While base motion is commanded the anchors follow the base and the feet, so once the command drops to
        zero they mark where the base and each foot were told to stand; a zero command resampled to zero keeps them
        (set at reset). For ``rewards.push_recovery_s`` after each push they follow too: where the robot stands once
        it has caught itself is where it is held, instead of being told to walk back to where the push found it."""
        speed = torch.linalg.vector_norm(self.commands.velocity, dim=1)
        moving = speed >= reward_terms.STAND_COMMAND_THRESHOLD
        if self._pushes_enabled and self.reward_cfg["push_recovery_s"] > 0:
            since_push = self.episode_length_buf % self._push_interval  # [policy steps]; a push ends steps with 0
            recovering = since_push <= round(self.reward_cfg["push_recovery_s"] / self.dt)
            moving |= recovering & (self.episode_length_buf >= self._push_interval)
        moving = moving[:, None]
        self.stand_anchor_xy = torch.where(moving, self.base_pos[:, :2], self.stand_anchor_xy)
        self.stand_anchor_feet_xy = torch.where(moving[:, None], self.foot_pos_w[:, :, :2], self.stand_anchor_feet_xy)

    def _check_termination(self) -> None:
        """``reset_buf``: time-out, trunk tilted beyond ``max_tilt_rad``, trunk below ``min_base_height``, trunk
        contact (if enabled) or an unstable simulation; ``time_out_buf``: the time-outs. In place, on the array
        backend."""
        ops, term, a = self.ops, self.cfg["terminations"], self._arrays
        self.unstable_buf = self.sim.unstable
        reset = a["reset_buf"]
        ops.greater(a["projected_gravity"][:, 2], -math.cos(term["max_tilt_rad"]), out=reset)  # tilted
        reset |= a["qpos"][:, 2] < term["min_base_height"]
        ops.greater_equal(a["episode_length"], self.max_episode_length, out=a["time_out_buf"])
        reset |= a["time_out_buf"]
        reset |= ops.of(self.unstable_buf)
        if term["trunk_contact"]:
            reset |= a["trunk_touch"] > 1.0

    def _compute_rewards(self) -> torch.Tensor:
        """Sum of the weighted terms; with ``only_positive_rewards`` the sum is clipped at zero before
        the ``termination`` term is added (as legged_gym does), so a fall penalty survives the clip."""
        terms = [fn(self) for fn in self.reward_functions]
        weighted = torch.stack(terms) if terms else torch.zeros(0, self.num_envs, device=self.device)
        weighted *= self.reward_scales  # (K, N)
        self.episode_sums += weighted
        total = (weighted[:-1] if self._termination_weighted else weighted).sum(dim=0)
        if self.reward_cfg["only_positive_rewards"]:
            total = total.clamp(min=0.0)
        if self._termination_weighted:
            total = total + weighted[-1]
        total = torch.nan_to_num(total).masked_fill_(self.unstable_buf, 0.0)
        norm = torch.linalg.vector_norm  # not Tensor.norm, whose Python wrapper costs more than the kernel here
        metrics = [total, norm(self.lin_vel_error, dim=1), self.yaw_rate_error.abs(), norm(self.ee_error, dim=1)]
        self.episode_metric_sums += torch.stack(metrics)  # EPISODE_METRICS order
        return total

    def _episode_log(self, env_ids: torch.Tensor) -> dict:
        """Per-term episode sums (per second of max episode) and per-task metrics of finished envs.

        Per task present among ``env_ids``: ``Task/<task>/return`` (episode sum of rewards),
        ``Task/<task>/{lin_vel_error [m/s], ang_vel_error [rad/s], ee_error [m]}`` (episode means)
        and ``Task/<task>/terminated`` (share of episodes that ended before the time-out).
        """
        term_means = (self.episode_sums[:, env_ids].mean(dim=1) / self.cfg["episode_length_s"]).tolist()
        log = {f"rew_{name}": value for name, value in zip(self.reward_names, term_means)}
        steps = self.episode_length_buf[env_ids].clamp(min=1).float()
        tasks = self.commands.task_ids[env_ids]
        for task_id, task in enumerate(self.task_names):
            mine = tasks == task_id
            if mine.any():
                log[f"Task/{task}/return"] = self.episode_metrics["return"][env_ids][mine].mean()
                for key in ("lin_vel_error", "ang_vel_error", "ee_error"):
                    log[f"Task/{task}/{key}"] = (self.episode_metrics[key][env_ids][mine] / steps[mine]).mean()
                log[f"Task/{task}/terminated"] = (~self.time_out_buf[env_ids][mine]).float().mean()
        log["terminated"] = (self.reset_buf[env_ids] & ~self.time_out_buf[env_ids]).float().mean()
        log["sim_unstable"] = self.unstable_buf[env_ids].float().mean()
        return log

    def reset_idx(self, env_ids: torch.Tensor) -> None:
        """Respawn ``env_ids`` standing at the origin with a random heading and slightly perturbed joints."""
        m = len(env_ids)
        if m == 0:
            return
        init = self.cfg["init_state"]
        device, generator = self.device, self.generator
        qpos = torch.zeros(m, self.sim.nq, device=device)
        qpos[:, 2] = self.cfg["robot"]["init_height"]
        qpos[:, 3:7] = quat_from_yaw((2 * torch.rand(m, generator=generator, device=device) - 1) * math.pi)
        noise = (2 * torch.rand(m, NUM_ACTIONS, generator=generator, device=device) - 1) * init["joint_pos_noise"]
        joint_pos = self.default_joint_pos + noise
        qpos[:, 7:] = joint_pos.clamp(self._joint_low, self._joint_high)
        qvel = torch.zeros(m, self.sim.nv, device=device)
        qvel[:, 0:6] = (2 * torch.rand(m, 6, generator=generator, device=device) - 1) * init["base_vel_noise"]
        self.sim.reset(env_ids, qpos, qvel, qpos[:, 7:])

        self.episode_length_buf[env_ids] = 0
        self.actions[env_ids] = 0.0
        self.joint_pos_target[env_ids] = self.default_joint_pos
        self.last_actions[env_ids] = 0.0
        self.last_joint_vel[env_ids] = 0.0
        self.feet_air_time[env_ids] = 0.0
        self.last_contacts[env_ids] = False
        self.stand_anchor_xy[env_ids] = qpos[:, 0:2]
        self.stand_anchor_feet_xy[env_ids] = self.foot_pos_w[env_ids, :, :2]  # the reset's forward pass placed them
        self.episode_sums[:, env_ids] = 0.0
        self.episode_metric_sums[:, env_ids] = 0.0
        self.commands.reset(env_ids)

    def _push_robots(self) -> None:
        """Every ``push_interval_s``, add a random horizontal velocity to the trunk (as a shove would)."""
        dr = self.cfg["domain_rand"]
        if not self._pushes_enabled:
            return
        lengths = self._arrays["episode_length"]
        due = self.ops.flatnonzero((lengths % self._push_interval == 0) & (lengths > 0))
        if len(due) == 0:
            return
        ids = self.ops.as_tensor(due)
        vel = self.sim.qvel[ids, 0:3].clone()
        kick = 2 * torch.rand(len(ids), 2, generator=self.generator, device=self.device) - 1
        vel[:, :2] += kick * dr["max_push_vel_xy"]
        self.sim.set_base_velocity(ids, vel)

    # ------------------------------------------------------------------ observations
    def _compute_observations(self) -> TensorDict:
        """The observation groups (layout in the module docstring), NaN-free and clipped to [-100, 100]."""
        raw = torch.cat([source(self) for source in self._policy_sources], dim=1)
        if self.cfg["observations"]["add_noise"]:
            noise = self.ops.of(self._noise)
            self.ops.fill_uniform(self._noise_source, noise)
            noise *= self._noise_affine[0]
            noise += self._noise_affine[1]
            policy = torch.addcmul(self._noise, raw, self._policy_obs_scale)
        else:
            policy = raw * self._policy_obs_scale
        critic = torch.cat([source(self) for source in self._critic_sources], dim=1) * self._critic_obs_scale
        obs = {
            "policy": policy.nan_to_num_().clamp_(-100.0, 100.0),
            "critic": critic.nan_to_num_().clamp_(-100.0, 100.0),
            "task_id": self.commands.task_ids[:, None].float(),
        }
        if self._partner_policy is not None:
            obs["own_actions"] = (~self._partner_entries()).float()
        return TensorDict(obs, batch_size=[self.num_envs], device=self.device, non_blocking=False)


declare_in_place_buffers(LeggedRobot, ("episode_length_buf", "default_joint_pos", *DERIVED_STATE, *STEP_STATE))
