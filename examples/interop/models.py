"""Small norse models whose every layer spikes, for the interop measurements (tests/test_interop.py,
examples/interop/matrix.py): LIF (LIFBoxCell), CubaLIF (LIFCell), recurrent (LIFRecurrentCell)."""

from __future__ import annotations

import numpy as np
import torch


def inputs(steps: int = 200, n: int = 8, samples: int = 4, p: float = 0.3, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((samples, steps, n)) < p).astype(np.float64)


def build(kind: str, dt: float = 1e-3, seed: int = 0):
    """A per-step norse model: kind in lif, cubalif, recurrent. Weights are positive-leaning so that
    every layer spikes at ``inputs()``; biases are zero (the readers' reset rules assume v_leak = 0)."""
    import norse.torch as nt

    torch.manual_seed(seed)
    if kind == "lif":
        m = nt.SequentialState(torch.nn.Linear(8, 16), nt.LIFBoxCell(dt=dt), torch.nn.Linear(16, 4), nt.LIFBoxCell(dt=dt))
        gains = (6.0, 4.0)
    elif kind == "cubalif":
        m = nt.SequentialState(torch.nn.Linear(8, 16), nt.LIFCell(dt=dt), torch.nn.Linear(16, 4), nt.LIFCell(dt=dt))
        gains = (1.5, 1.0)
    elif kind == "recurrent":
        m = nt.SequentialState(nt.LIFRecurrentCell(8, 16, dt=dt), torch.nn.Linear(16, 4, bias=False), nt.LIFCell(dt=dt))
        gains = (1.5, 1.0)
    else:
        raise ValueError(kind)
    scale = (1e-3 / dt) if kind == "lif" else 1.0  # a box cell's drive per count grows with dt
    with torch.no_grad():
        linears = [p for n, p in m.named_parameters() if "weight" in n and "recurrent" not in n]
        for p, g in zip(linears, gains):
            p.copy_(p.abs() * 0.5 + p) 
            p.mul_(g * scale * 2.0)
        for n, p in m.named_parameters():
            if "bias" in n:
                p.zero_()
            if "recurrent_weights" in n:
                p.mul_(0.5)
    return m.eval()


#: zoo family -> the dataset its checkpoint was trained on (docs/zoo.md)
ZOO = {"resnet": "digits", "segmentation": "digits-seg", "transfer": "digits", "audio": "spoken-digits"}


def zoo(family: str, samples: int = 2):
    """(graph, inputs [samples, steps, ...], dt) of a shipped zoo checkpoint, exported by nirdeploy,
    on the first test samples of its own dataset binned at its training dt."""
    from toolchain import api
    from toolchain.data import open_dataset

    g = api.export_checkpoint(f"examples.zoo.{family}.model:build_model", f"examples/zoo/{family}/checkpoint.pt")
    g = g[0] if isinstance(g, tuple) else g
    dt = float(g.metadata["dt"])
    x = open_dataset(ZOO[family]).subset(np.arange(samples)).bin(dt).astype(np.float64)
    return g, x, dt
