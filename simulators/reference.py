"""The reference simulator: a batched torch implementation of a lowered NIR graph.

Each neuron layer runs its discrete SSM (``toolchain.dynamics.discretize``) exactly as written there;
linear nodes run as torch functions; the edges follow the one interpreter
(``toolchain/program/interpreter.py``: several edges into one node are summed, a recurrent edge
delivers its source's value from the previous time step). Computation is in
float64 by default so that the only rounding is far below any threshold decision.
"""

from __future__ import annotations

import numpy as np
import torch

from toolchain.program import Program
from toolchain.program.interpreter import StepInterpreter
from simulators.result import SimResult


class _NeuronState:
    def __init__(self, op, batch: int, dtype):
        ssm = op.ssm
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)
        self.ssm = ssm
        self.s = ssm.n_states
        self.A = t(ssm.A)
        self.B = t(ssm.B)
        self.c = t(ssm.c)
        self.th = None if ssm.v_threshold is None else t(ssm.v_threshold)
        self.v_reset = t(ssm.v_reset)
        self.v_sub = None if ssm.v_subtract is None else t(ssm.v_subtract)
        self.v_keep = None if getattr(ssm, "v_keep", None) is None else t(ssm.v_keep)
        if self.s == 2 and bool(torch.any(self.A[:, 0, 1] != 0)):
            raise ValueError("two-state neuron with a non lower-triangular A")
        self.x = t(ssm.x0).unsqueeze(0).repeat(batch, 1, 1)  # [B, N, s]
        self.refractory = int(getattr(ssm, "refractory", 0))
        self.guard = bool(getattr(ssm, "reset_guard", False))
        self.held = torch.zeros(self.x.shape[:2], dtype=torch.bool)  # spiked last step (refractory)

    def step(self, u: torch.Tensor):
        """u: [B, N] summed input of this step -> (output [B, N], spikes or None, v)."""
        A, B, c, x = self.A, self.B, self.c, self.x
        if self.s == 1:
            v = A[:, 0, 0] * x[..., 0] + B[:, 0] * u + c[:, 0]
            new = [v]
        else:
            i_old, v_old = x[..., 0], x[..., 1]
            i = A[:, 0, 0] * i_old + B[:, 0] * u + c[:, 0]
            v = A[:, 1, 0] * i_old + A[:, 1, 1] * v_old + B[:, 1] * u + c[:, 1]
            new = [i, v]
        z = None
        if self.th is not None:
            if self.refractory:  # v is held at v_reset through the step after a spike
                v = torch.where(self.held, self.v_reset.expand_as(v), v)
            if self.guard:  # v still above the threshold after its subtraction: decide against th + v_sub
                z = v > self.th + torch.where(self.x[..., -1] > self.th, self.v_sub, torch.zeros_like(self.v_sub))
            else:
                z = v > self.th
            if self.refractory:
                self.held = z
            if self.v_sub is not None:
                kept = v if self.v_keep is None else self.v_keep * v
                v = torch.where(z, kept - self.v_sub, v)
            else:
                v = torch.where(z, self.v_reset.expand_as(v), v)
            new[-1] = v
        self.x = torch.stack(new, dim=-1)
        out = z.to(u.dtype) if z is not None else v
        return out, z, v


def simulate(
    program: Program,
    inputs,
    record_v: bool = False,
    record_spikes: bool = True,
    dtype=torch.float64,
    batch_size: int = 256,
    progress: bool = False,
) -> SimResult:
    """Run ``inputs`` [samples, steps, *input_shape] through ``program``."""
    x_all = torch.as_tensor(np.asarray(inputs), dtype=dtype)
    want = tuple(program.input_shape)
    if tuple(x_all.shape[2:]) != want:
        if x_all.ndim >= 2 and int(np.prod(x_all.shape[2:])) == int(np.prod(want)):
            x_all = x_all.reshape(x_all.shape[0], x_all.shape[1], *want)
        else:
            from toolchain.errors import NirDeployError

            raise NirDeployError(
                f"shape mismatch: the input has shape {tuple(x_all.shape[2:])} per step, "
                f"but the graph's input is {want}"
            )
    n = x_all.shape[0]
    starts = range(0, n, batch_size)
    if progress and n > batch_size:
        from tqdm import tqdm

        starts = tqdm(starts, desc="reference", unit="batch", leave=False)
    parts = [
        _simulate_batch(program, x_all[s : s + batch_size], record_v, record_spikes) for s in starts
    ]
    return SimResult.concat(parts)


class _Reference(StepInterpreter):
    """The reference's hooks: neurons step their SSM, outputs and spikes are recorded per step."""

    def __init__(self, program: Program, x: torch.Tensor, record_v: bool, record_spikes: bool):
        super().__init__(program)
        self.x = x
        self.bsz = x.shape[0]
        self.states = {op.name: _NeuronState(op, self.bsz, x.dtype) for op in program.neurons()}
        self.record_v, self.record_spikes = record_v, record_spikes
        self.outputs = {k: [] for k in program.output_names}
        self.spikes = {k: [] for k, st in self.states.items() if st.th is not None} if record_spikes else {}
        self.vs = {k: [] for k in self.states} if record_v else {}

    def zeros_like_output(self, op):
        return torch.zeros((self.bsz,) + op.out_shape, dtype=self.x.dtype)

    def input(self, op):
        return self.x[:, self.t]

    def neuron(self, op, u):
        out, z, v = self.states[op.name].step(u.reshape(self.bsz, -1))
        if z is not None and self.record_spikes:
            self.spikes[op.name].append(z.reshape((self.bsz,) + op.out_shape))
        if self.record_v:
            self.vs[op.name].append(v.reshape((self.bsz,) + op.out_shape))
        return out.reshape((self.bsz,) + op.out_shape)

    def output(self, op, u):
        self.outputs[op.name].append(u)
        return u


def _simulate_batch(program: Program, x: torch.Tensor, record_v: bool, record_spikes: bool) -> SimResult:
    run = _Reference(program, x, record_v, record_spikes)
    with torch.no_grad():
        run.run(x.shape[1])

    def stack(d):
        return {k: torch.stack(v, dim=1).numpy() for k, v in d.items()}

    return SimResult(
        backend="reference",
        dt=program.disc.dt,
        n_steps=x.shape[1],
        outputs=stack(run.outputs),
        spikes=stack(run.spikes),
        v=stack(run.vs),
        layer_types={op.name: op.type for op in program.neurons()},
        layer_sizes={op.name: op.ssm.n for op in program.neurons()},
    )
