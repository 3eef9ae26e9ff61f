"""The installable home of the app (``scripts/`` + ``config/`` + the shipped experts).

``pip install .`` installs the checkout's ``scripts/``, ``config/`` and ``resources/checkpoints/*.pt`` as
``go2_piper_moe/scripts``, ``go2_piper_moe/config`` and ``go2_piper_moe/resources/checkpoints`` (``setup.py``), the
layout of the repository root, so the scripts find their config (hydra's ``config_path="../config"``) and the shipped
experts (``scripts/common.py: app_path``) the same way installed or not. The console commands of :mod:`.cli` run
those scripts: ``go2-piper-train`` is ``python scripts/train.py``.
"""
