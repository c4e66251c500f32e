"""Fast training path shared by the vision examples (ResNet, segmentation).

Stateless layers (Conv2d, BatchNorm, Linear, pooling) run on all time steps at once, as one
batch of ``B * T`` frames; each norse box cell (LIFBoxCell / LIBoxCell) runs as one autograd
function over the whole sequence (:class:`BoxSequence`: forward loop without a graph,
hand-written backward loop). The forward arithmetic is norse's ``lif_box_feed_forward_step`` /
``li_box_feed_forward_step`` in the same order, so a model in eval mode gives the same spikes
here as through its per-step ``forward`` (tests/test_zoo_vision.py checks it). Nothing here
changes the deployed model: it is only how the weights are trained.

Gradients: surrogate ``1 / (alpha |v - v_th| + 1)^2`` (SuperSpike; alpha = 1 is norse 1.1.0's),
reset left out of the gradient (as in examples/zoo/temporal/train.py).
"""

from __future__ import annotations

from typing import Tuple

import torch


class BoxSequence(torch.autograd.Function):
    """A LIFBox / LIBox layer over a sequence: input currents [B, T, ...] -> (out, v before reset).

    Works time-major internally (contiguous [T, B, ...] slices are several times faster than
    strided [:, t] views)."""

    @staticmethod
    def forward(ctx, cur, a, v_leak, v_th, v_reset, spiking: bool, alpha: float):
        c = (cur.transpose(0, 1) + v_leak).contiguous()  # input + v_leak, every step at once
        T = c.shape[0]
        v = torch.zeros_like(c[0]) + v_leak
        v_pre = torch.empty_like(c)
        z = torch.empty_like(c) if spiking else None
        for t in range(T):
            # norse: v + dt * tau_mem_inv * (input + v_leak - v), the same operations in order
            v = v + a * (c[t] - v)
            v_pre[t] = v
            if spiking:
                zt = v - v_th > 0
                z[t] = zt
                v = torch.where(zt, v_reset, v)  # = (1 - z) v + z v_reset
        ctx.save_for_backward(v_pre, z if spiking else v_pre)
        ctx.a, ctx.v_th, ctx.spiking, ctx.alpha = a, v_th, spiking, alpha
        out = z if spiking else v_pre
        return out.transpose(0, 1), v_pre.transpose(0, 1)

    @staticmethod
    def backward(ctx, g_out, g_vpre):
        v_pre, z = ctx.saved_tensors  # time-major
        a, v_th, spiking, alpha = ctx.a, ctx.v_th, ctx.spiking, ctx.alpha
        g = torch.zeros_like(v_pre)
        if g_out is not None:
            g = g + g_out.transpose(0, 1)
        if spiking:
            g = g / (alpha * torch.abs(v_pre - v_th) + 1.0).pow(2)
        if g_vpre is not None:
            g = g + g_vpre.transpose(0, 1)
        keep = (1 - z) if spiking else None  # the reset is detached
        g_cur = torch.empty_like(v_pre)
        gv = torch.zeros_like(v_pre[0])
        for t in range(v_pre.shape[0] - 1, -1, -1):
            gt = g[t] + (gv * keep[t] if spiking else gv)  # dL/dv_pre[t]
            g_cur[t] = a * gt
            gv = (1 - a) * gt
        return g_cur.transpose(0, 1), None, None, None, None, None, None


def cell_run(cell, cur: torch.Tensor, alpha: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a norse LIFBoxCell / LIBoxCell over ``cur`` [B, T, ...]: (spikes or v, v before reset)."""
    import norse.torch as nt

    p = cell.p
    a = cell.dt * p.tau_mem_inv
    if isinstance(cell, nt.LIFBoxCell):
        return BoxSequence.apply(cur, a, p.v_leak, p.v_th, p.v_reset, True, float(alpha))
    if isinstance(cell, nt.LIBoxCell):
        return BoxSequence.apply(cur, a, p.v_leak, None, None, False, float(alpha))
    raise TypeError(f"fast training supports LIFBoxCell and LIBoxCell, not {type(cell).__name__}")


def frames(module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless module to every step of ``x`` [B, T, ...] at once."""
    B, T = x.shape[:2]
    y = module(x.reshape((B * T,) + tuple(x.shape[2:])))
    return y.reshape((B, T) + tuple(y.shape[1:]))


def run_steps(model, x: torch.Tensor) -> torch.Tensor:
    """The deployed arithmetic: call the per-step model once per step; x [B, T, ...] -> [B, T, ...]."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            o, state = model(x[:, t], state)
            outs.append(o)
    return torch.stack(outs, dim=1)
