"""Train with rsl_rl's PPO (or PPOMoE) on a hydra config.

    python scripts/train.py --config-name=train env=combo_go2Piper_locomotion
    python scripts/train.py --config-name=train env=combo_go2Piper_reaching runner.max_iterations=300
    python scripts/train.py ... resume=true ckpt_path=logs/<experiment>/<run>/model_100.pt
"""

from __future__ import annotations

import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from common import claim_run_dir, env_config, make_env, make_runner, seed_everything, user_errors
from validation import validate_config


@hydra.main(config_path="../config", config_name="train", version_base=None)
def main(cfg: DictConfig) -> None:
    with user_errors():
        validate_config(cfg)
        log_dir = HydraConfig.get().runtime.output_dir
        claim_run_dir(log_dir)
        OmegaConf.save(cfg, os.path.join(log_dir, "config.yaml"), resolve=True)
        seed_everything(cfg.seed)
        env = make_env(env_config(cfg))
        runner = make_runner(cfg, env, log_dir, ckpt_path=cfg.ckpt_path if cfg.resume else None)
        if cfg.resume:
            runner.load(cfg.ckpt_path)
            print(f"resumed from {cfg.ckpt_path}: continuing with iteration {runner.current_learning_iteration}")
        print(f"run folder: {log_dir}")
        runner.learn(cfg.runner.max_iterations, init_at_random_ep_len=True)


if __name__ == "__main__":
    main()
