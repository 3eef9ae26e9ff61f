"""Install: ``pip install -c constraints/cpu.txt -e ".[dev]"`` (CPU) -- see README.

``pip install .`` (not editable) works too, from any folder: the folders below are installed inside the packages,
where they stay in the checkout. legged_gym ships its robot and target sequences (``legged_gym/resources/robots``,
``legged_gym/data``: ``legged_gym.LEGGED_GYM_ROOT_DIR``); the app ships as ``go2_piper_moe`` with the repository
root's layout (``scripts/``, ``config/``, ``resources/checkpoints/*.pt``), run by the console commands below.
"""

from setuptools import find_packages, setup

SHIPPED = {
    "legged_gym.resources.robots.go2_piper": ("resources/robots/go2_piper", ["*.xml"]),
    "legged_gym.data": ("data", ["*.pkl"]),
    "go2_piper_moe.scripts": ("scripts", []),
    "go2_piper_moe.config": ("config", ["**/*.yaml"]),
    "go2_piper_moe.resources.checkpoints": ("resources/checkpoints", ["*.pt"]),
}
"""Installed package -> (its folder in the checkout, the data files it ships besides its modules)."""

GPU_REQUIRES = ["mujoco-warp>=4.0,<4.1", "warp-lang>=1.19"]

setup(
    name="go2-piper-moe",
    version="0.1.0",
    description="Go2+Piper legged manipulation on batched MuJoCo, with a mixture of frozen rsl_rl experts",
    packages=find_packages(include=["legged_gym", "legged_gym.*", "rsl_rl_moe", "rsl_rl_moe.*", "go2_piper_moe"])
    + list(SHIPPED),
    package_dir={package: folder for package, (folder, _) in SHIPPED.items()},
    package_data={package: files for package, (_, files) in SHIPPED.items()},
    entry_points={
        "console_scripts": [
            "go2-piper-train = go2_piper_moe.cli:train",
            "go2-piper-play = go2_piper_moe.cli:play",
            "go2-piper-evaluate = go2_piper_moe.cli:evaluate",
        ]
    },
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.3",
        "rsl-rl-lib>=5.5,<5.6",
        "mujoco>=4.0",
        "hydra-core>=1.3",
        "tensorboard>=2.15",
        "matplotlib>=3.7",
        "numpy>=1.24",
        "entmax>=1.3",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.4",
    ],
    extras_require={
        # MuJoCo Warp: the GPU physics backend (env.sim_device=cuda:N); its CPU device runs the same code in tests
        "gpu": GPU_REQUIRES,
        "dev": ["pytest>=7", "ruff==0.17.6", "setuptools>=64", "onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"]
        + GPU_REQUIRES,
    },
)
