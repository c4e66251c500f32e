"""What every backend returns: recorded activity of one run over a batch of samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from toolchain.errors import NirDeployError


@dataclass
class SimResult:
    """Activity of a batch of samples, all arrays indexed [sample, step, *node shape]."""

    backend: str
    dt: float
    n_steps: int
    outputs: Dict[str, np.ndarray]  # what reaches each Output node
    spikes: Dict[str, np.ndarray] = field(default_factory=dict)  # bool, spiking neuron nodes
    v: Dict[str, np.ndarray] = field(default_factory=dict)  # membrane potential (if recorded)
    layer_types: Dict[str, str] = field(default_factory=dict)  # node -> NIR type, all neuron nodes
    layer_sizes: Dict[str, int] = field(default_factory=dict)
    info: Dict[str, object] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return next(iter(self.outputs.values())).shape[0]

    def output(self, name: Optional[str] = None) -> np.ndarray:
        if name is None:
            name = "output" if "output" in self.outputs else sorted(self.outputs)[0]
        return self.outputs[name]

    def scores(self, readout: str = "sum", name: Optional[str] = None) -> np.ndarray:
        """Class scores [sample, class] from the output over time."""
        out = self.output(name).astype(np.float64)
        out = out.reshape(out.shape[0], out.shape[1], -1)
        if readout == "sum":
            return out.sum(axis=1)
        if readout == "mean":
            return out.mean(axis=1)
        if readout == "max":
            return out.max(axis=1)
        if readout == "last":
            return out[:, -1]
        raise NirDeployError(f"unknown readout {readout!r}; choose sum, max, mean or last")

    def predictions(self, readout: str = "sum", name: Optional[str] = None) -> np.ndarray:
        return np.argmax(self.scores(readout, name), axis=1)

    @staticmethod
    def concat(parts: List["SimResult"]) -> "SimResult":
        first = parts[0]
        cat = lambda key: {k: np.concatenate([getattr(p, key)[k] for p in parts]) for k in getattr(first, key)}
        return SimResult(
            backend=first.backend,
            dt=first.dt,
            n_steps=first.n_steps,
            outputs=cat("outputs"),
            spikes=cat("spikes"),
            v=cat("v"),
            layer_types=dict(first.layer_types),
            layer_sizes=dict(first.layer_sizes),
            info=dict(first.info),
        )


def check_result_memory(program, n: int, T: int, record_v: bool = False, record_spikes: bool = True,
                        backend: str = "a backend") -> None:  # fmt: skip
    """Refuse a run whose recordings (outputs, spikes, potentials of ``n`` samples x ``T`` steps)
    would not fit in memory (``toolchain/limits.py``), before the run allocates them."""
    import numpy as np

    from toolchain.limits import check_allocation

    per_step = float(np.prod(program.input_shape)) * 8.0
    per_step += sum(8.0 * float(np.prod(program.ops[o].in_shape)) for o in program.output_names)
    for op in program.neurons():
        per_step += (1.0 * op.ssm.n if (record_spikes and op.ssm.spiking) else 0.0) + (8.0 * op.ssm.n if record_v else 0.0)
    check_allocation(2.0 * n * T * per_step, f"recording {n} samples x {T} steps on {backend}")
