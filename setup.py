"""Install: ``pip install -c constraints/cpu.txt -e ".[dev]"`` (CPU) -- see README."""

from setuptools import find_packages, setup

setup(
    name="go2-piper-moe",
    version="0.1.0",
    description="Go2+Piper legged manipulation on batched MuJoCo, with a mixture of frozen rsl_rl experts",
    packages=find_packages(include=["legged_gym", "legged_gym.*", "rsl_rl_moe", "rsl_rl_moe.*"]),
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
        "dev": ["pytest>=7", "onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"],
        "gpu": ["mujoco-warp", "warp-lang"],
    },
)
