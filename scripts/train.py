"""Train with rsl_rl's PPO (or PPOMoE) on a hydra config.

python scripts/train.py --config-name=train env=combo_go2Piper_locomotion
python scripts/train.py --config-name=train env=combo_go2Piper_reaching runner.max_iterations=300
python scripts/train.py ... resume=true ckpt_path=logs/<experiment>/<run>/model_100.pt
torchrun --standalone --nproc_per_node=2 scripts/train.py --config-name=train env=combo_go2Piper_locomotion
"""

from __future__ import annotations

import os
import shutil

import hydra
from common import (
    claim_run_dir,
    env_config,
    join_processes,
    leave_processes,
    make_env,
    make_runner,
    seed_everything,
    user_errors,
)
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from validation import validate_config


@hydra.main(config_path="../config", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate_config(cfg)
        hydra_dir = HydraConfig.get().runtime.output_dir
        process, log_dir = join_processes(cfg, hydra_dir)  # under torchrun: every rank gets rank 0's folder
        try:
            if process.rank == 0:
                claim_run_dir(log_dir)
                OmegaConf.save(cfg, os.path.join(log_dir, "config.yaml"), resolve=True)
            seed_everything(cfg.seed)
            env = make_env(env_config(cfg))
            runner = make_runner(cfg, env, log_dir, ckpt_path=cfg.ckpt_path if cfg.resume else None)
            if cfg.resume:
                runner.load(cfg.ckpt_path)
                if process.rank == 0:
                    print(
                        f"resumed from {cfg.ckpt_path}: continuing with iteration {runner.current_learning_iteration}"
                    )
            if process.rank == 0:
                print(
                    f"run folder: {log_dir}" + (f" ({process.world_size} processes)" if process.is_distributed else "")
                )
            runner.learn(cfg.runner.max_iterations, init_at_random_ep_len=True)
        finally:
            if hydra_dir != log_dir:  # another rank's private hydra folder
                shutil.rmtree(hydra_dir, ignore_errors=True)
            leave_processes()


if __name__ == "__main__":
    main()
