"""The model ``nirdeploy demo`` deploys, shipped inside the package so that an installed
nirdeploy (a wheel, no checkout) runs the demo from any directory.

``model.py`` is the network definition (the training script is examples/zoo/temporal/train.py);
``checkpoint.pt`` is the shipped state dict, trained at dt = 1 ms.
"""

from pathlib import Path

#: the factory, as ``--model`` spells it
MODEL = "toolchain.demo_model.model:build_model"
#: the shipped checkpoint (package data)
CHECKPOINT = Path(__file__).resolve().parent / "checkpoint.pt"
