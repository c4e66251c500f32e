"""A small spiking DeepLab for the segmentation digits (after Kim, Chough, Panda 2021).

Kim, Chough, Panda, "Beyond Classification: Directly Training Spiking Neural Networks for
Semantic Segmentation" (Neuromorph. Comput. Eng. 2022; arXiv 2110.07742): Spiking FCN and
Spiking DeepLab, trained directly with surrogate gradients, the class score of every pixel read
from a non-spiking output layer's membrane potential accumulated over time, then upsampled.
Kept here: a strided encoder, atrous (dilated) convolutions instead of further downsampling, an
ASPP-style block of parallel dilated convolutions, a per-pixel 1x1 classifier into non-spiking
LI neurons at reduced resolution, and the final upsampling outside the network. It is scaled
down to train on a CPU in minutes.

``build_model()`` (defaults, input [2, 32, 32] ON/OFF event counts per bin, 11 classes:
background and the ten digits)::

    enc1    Conv2d(2, 16, 3, s=2, p=1) + BN -> LIFBox                       16 x 16 x 16
    enc2    Conv2d(16, 32, 3, p=2, dilation=2) + BN -> LIFBox (atrous)      32 x 16 x 16
    ASPP    aspp0 Conv2d(32, 32, 1) + BN -> LIFBox                          32 x 16 x 16
            aspp1 Conv2d(32, 32, 3, p=2, dilation=2) + BN -> LIFBox         32 x 16 x 16
            aspp2 Conv2d(32, 32, 3, p=4, dilation=4) + BN -> LIFBox         32 x 16 x 16
    scores  cls0(aspp0) + cls1(aspp1) + cls2(aspp2), each Conv2d(32, 11, 1),
            summed into one LIBox layer (non-spiking)                       11 x 16 x 16

The ASPP branches see the same features at three rates (receptive fields of 11 to 27 input
pixels for 12-pixel digits); as in DeepLab v2, each branch gets its own per-pixel classifier and
the class scores are summed (three edges into the readout node; no concatenation node, which
NIR and Lava lack). The network's output is the class score map at 1/2 resolution (output
stride 2); the scores summed over time (``readout = "sum"``) are upsampled bilinearly to
32 x 32 and the argmax over classes is the predicted mask -- on the host, after the chip
(toolchain/analysis/segmentation.py).

Why DeepLab v2's fusion rather than v3's (branches concatenated, projected by a 1x1 conv into a
further spiking layer, then classified): with binary spikes the extra spiking layer stalled
training at the "background vs. digit" plateau (per-pixel loss ~1.25, mean IoU ~0.1 after
several epochs, also in a non-temporal binary-activation control), while summing per-branch
scores trained. Output stride 4 (8 x 8 scores) was too coarse for digit strokes (a ReLU
network of the same shape reached mean IoU ~0.3 at stride 4 and ~0.55 at stride 2).

Every spiking layer is a one-state ``LIFBoxCell`` (BatchNorm folding gives the convolutions a
bias; see examples/zoo/resnet/model.py). ``out, state = model(x_t, state)`` is what
``nirdeploy export`` traces; :meth:`SpikingDeepLab.forward_sequence` is the same arithmetic over a
sequence, for training.
"""

from __future__ import annotations

from typing import Sequence

import norse.torch as nt
import torch

from examples.zoo.resnet.fast import cell_run, frames

#: per-pixel class scores = the readout layer's membrane potential summed over time
readout = "sum"

#: host-side upsampling of the score map to the mask size (toolchain/analysis/segmentation.py)
upsampling = "bilinear"


def _lif(tau: float, v_th: float, dt: float) -> nt.LIFBoxCell:
    return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau), v_th=torch.tensor(float(v_th))), dt=float(dt))


def _conv_bn(c_in, c_out, k, stride=1, dilation=1):
    pad = dilation * (k - 1) // 2
    return torch.nn.Sequential(
        torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        torch.nn.BatchNorm2d(c_out),
    )


class SpikingDeepLab(torch.nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int] = (2, 32, 32),
        channels: Sequence[int] = (16, 32),
        atrous_rate: int = 2,
        rates: Sequence[int] = (2, 4),
        n_classes: int = 11,
        dt: float = 4e-3,
        tau: float = 0.01,
        tau_out: float = 0.02,
        v_th: float = 1.0,
    ):
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        c1, c2 = [int(c) for c in channels]
        self.enc1 = _conv_bn(self.input_shape[0], c1, 3, stride=2)
        self.lif1 = _lif(tau, v_th, dt)
        self.enc2 = _conv_bn(c1, c2, 3, dilation=int(atrous_rate))
        self.lif2 = _lif(tau, v_th, dt)
        # ASPP: parallel branches (1x1, dilated 3x3), each with its own spiking layer ...
        self.aspp0 = _conv_bn(c2, c2, 1)
        self.lif_a0 = _lif(tau, v_th, dt)
        self.aspp1 = _conv_bn(c2, c2, 3, dilation=int(rates[0]))
        self.lif_a1 = _lif(tau, v_th, dt)
        self.aspp2 = _conv_bn(c2, c2, 3, dilation=int(rates[1]))
        self.lif_a2 = _lif(tau, v_th, dt)
        # ... each with its own per-pixel 1x1 classifier; the class scores are summed (DeepLab v2's
        # ASPP fusion) in the non-spiking readout layer
        K = int(n_classes)
        self.cls0 = torch.nn.Conv2d(c2, K, 1)
        self.cls1 = torch.nn.Conv2d(c2, K, 1, bias=False)
        self.cls2 = torch.nn.Conv2d(c2, K, 1, bias=False)
        self.out = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out)), dt=float(dt))

    def forward(self, x, state=None):
        s = state if state is not None else [None] * 6
        z1, s1 = self.lif1(self.enc1(x), s[0])
        z2, s2 = self.lif2(self.enc2(z1), s[1])
        a0, s3 = self.lif_a0(self.aspp0(z2), s[2])
        a1, s4 = self.lif_a1(self.aspp1(z2), s[3])
        a2, s5 = self.lif_a2(self.aspp2(z2), s[4])
        v, s6 = self.out(self.cls0(a0) + self.cls1(a1) + self.cls2(a2), s[5])
        return v, [s1, s2, s3, s4, s5, s6]

    def forward_sequence(self, x, alpha: float = 1.0):
        """x [B, T, C, H, W] -> (score membrane [B, T, K, h, w], spikes of every spiking layer)."""
        z1, _ = cell_run(self.lif1, frames(self.enc1, x), alpha)
        z2, _ = cell_run(self.lif2, frames(self.enc2, z1), alpha)
        a0, _ = cell_run(self.lif_a0, frames(self.aspp0, z2), alpha)
        a1, _ = cell_run(self.lif_a1, frames(self.aspp1, z2), alpha)
        a2, _ = cell_run(self.lif_a2, frames(self.aspp2, z2), alpha)
        cur = frames(self.cls0, a0) + frames(self.cls1, a1) + frames(self.cls2, a2)
        v, _ = cell_run(self.out, cur, alpha)
        return v, [z1, z2, a0, a1, a2]


def build_model(
    input_shape: Sequence[int] = (2, 32, 32),
    channels: Sequence[int] = (16, 32),
    atrous_rate: int = 2,
    rates: Sequence[int] = (2, 4),
    n_classes: int = 11,
    dt: float = 4e-3,
    tau: float = 0.01,
    tau_out: float = 0.02,
    v_th: float = 1.0,
) -> SpikingDeepLab:
    """The per-step spiking DeepLab; ``dt`` (seconds) is the bin width its cells integrate over."""
    return SpikingDeepLab(input_shape, channels, atrous_rate, rates, n_classes, dt, tau, tau_out, v_th)
