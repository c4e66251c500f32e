"""A small spiking ResNet for the event digits (after Vicente-Sola et al. 2022).

Vicente-Sola, Manna, Kirkland, Di Caterina, Bihl, "Keys to Accurate Feature Extraction Using
Residual Spiking Neural Networks", Neuromorph. Comput. Eng. 2022 (CIFAR-10 94.14 %,
DVS-CIFAR10 72.98 %). What is kept from the paper: residual blocks whose skip path is added
into the *input current* of the block's second spiking layer (the sum is a second edge into that
neuron node, no extra neuron on the skip path), a 1x1 convolution (+ BatchNorm) on the shortcut
when the shape changes, BatchNorm after every convolution (folded into the convolution at
export), and spiking neurons everywhere except the readout. It is scaled down to train on a
CPU in minutes.

``build_model()`` (defaults, input [2, 16, 16] ON/OFF event counts per bin)::

    stem    Conv2d(2, 8, 3, s=2, p=1) + BN -> LIFBox                      8 x 8 x 8
    block1  Conv2d(8, 8, 3, p=1) + BN -> LIFBox                           8 x 8 x 8
            Conv2d(8, 8, 3, p=1) + BN  (+ stem spikes: identity) -> LIFBox
    block2  Conv2d(8, 16, 3, s=2, p=1) + BN -> LIFBox                    16 x 4 x 4
            Conv2d(16, 16, 3, p=1) + BN (+ BN(Conv1x1 s=2)(block1)) -> LIFBox
    block3  Conv2d(16, 32, 3, s=2, p=1) + BN -> LIFBox                   32 x 2 x 2
            Conv2d(32, 32, 3, p=1) + BN (+ BN(Conv1x1 s=2)(block2)) -> LIFBox
    head    Flatten -> Linear(128, 10) -> LIBox (non-spiking)             10

(2,314 neurons; ``channels`` sets the widths and the number of blocks, ``stem_stride=1`` keeps
the 16 x 16 resolution in the stem: 4x the neurons and training time, and the 8x8 source digits
gain little from it.)

The class is the readout neuron with the highest membrane potential summed over time
(``readout = "sum"``). Every spiking layer is a one-state ``LIFBoxCell``: BatchNorm folding gives
every convolution a bias, which Lava's two-state LIF could not take into its synaptic current.
The model is a per-step module, ``out, state = model(x_t, state)``, which ``nirdeploy export``
traces; :meth:`SpikingResNet.forward_sequence` is the same arithmetic over a whole sequence, for
training (examples/zoo/resnet/fast.py).
"""

from __future__ import annotations

from typing import Sequence

import norse.torch as nt
import torch

from examples.zoo.resnet.fast import cell_run, frames

#: class = argmax over the readout neurons of the membrane potential summed over time
readout = "sum"


def _lif(tau: float, v_th: float, dt: float) -> nt.LIFBoxCell:
    return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau), v_th=torch.tensor(float(v_th))), dt=float(dt))


class Block(torch.nn.Module):
    """conv-BN-LIF, conv-BN + shortcut -> LIF. Shortcut: the block's input spikes (identity) or
    a 1x1 conv + BN when the channels or the resolution change."""

    def __init__(self, c_in: int, c_out: int, stride: int, tau: float, v_th: float, dt: float):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c_out)
        self.lif1 = _lif(tau, v_th, dt)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c_out)
        self.projection = stride != 1 or c_in != c_out
        if self.projection:
            self.short = torch.nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.bn_short = torch.nn.BatchNorm2d(c_out)
        self.lif2 = _lif(tau, v_th, dt)

    def shortcut(self, z):
        return self.bn_short(self.short(z)) if self.projection else z

    def forward(self, z, state=None):
        s = state if state is not None else (None, None)
        h, s1 = self.lif1(self.bn1(self.conv1(z)), s[0])
        out, s2 = self.lif2(self.bn2(self.conv2(h)) + self.shortcut(z), s[1])
        return out, (s1, s2)

    def forward_sequence(self, z, alpha: float = 1.0):
        h, _ = cell_run(self.lif1, frames(lambda f: self.bn1(self.conv1(f)), z), alpha)
        cur = frames(lambda f: self.bn2(self.conv2(f)), h) + frames(self.shortcut, z)
        out, _ = cell_run(self.lif2, cur, alpha)
        return out, [h, out]


class SpikingResNet(torch.nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int] = (2, 16, 16),
        channels: Sequence[int] = (8, 16, 32),
        n_classes: int = 10,
        dt: float = 2e-3,
        tau: float = 0.01,
        tau_out: float = 0.02,
        v_th: float = 1.0,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        ch = [int(c) for c in channels]
        self.stem = torch.nn.Conv2d(self.input_shape[0], ch[0], 3, stride=int(stem_stride), padding=1, bias=False)
        self.bn_stem = torch.nn.BatchNorm2d(ch[0])
        self.lif_stem = _lif(tau, v_th, dt)
        # block 1 keeps the stem's shape (identity shortcut), every further block halves the
        # resolution and changes the channels (1x1 conv shortcut)
        self.blocks = torch.nn.ModuleList(
            [Block(ch[0], ch[0], 1, tau, v_th, dt)] + [Block(a, b, 2, tau, v_th, dt) for a, b in zip(ch[:-1], ch[1:])]
        )
        h, w = self.input_shape[1], self.input_shape[2]
        for _ in range(len(ch) - 1 + (1 if int(stem_stride) == 2 else 0)):
            h, w = (h + 1) // 2, (w + 1) // 2
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(ch[-1] * h * w, int(n_classes))
        self.out = nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out)), dt=float(dt))

    def forward(self, x, state=None):
        s = state if state is not None else [None] * (len(self.blocks) + 2)
        z, s0 = self.lif_stem(self.bn_stem(self.stem(x)), s[0])
        new = [s0]
        for i, block in enumerate(self.blocks):
            z, si = block(z, s[1 + i])
            new.append(si)
        v, so = self.out(self.fc(self.flat(z)), s[-1])
        return v, new + [so]

    def forward_sequence(self, x, alpha: float = 1.0):
        """x [B, T, C, H, W] -> (readout membrane [B, T, n_classes], spikes of every spiking layer)."""
        z, _ = cell_run(self.lif_stem, frames(lambda f: self.bn_stem(self.stem(f)), x), alpha)
        rec = [z]
        for block in self.blocks:
            z, r = block.forward_sequence(z, alpha)
            rec += r
        v, _ = cell_run(self.out, frames(lambda f: self.fc(self.flat(f)), z), alpha)
        return v, rec


def build_model(
    input_shape: Sequence[int] = (2, 16, 16),
    channels: Sequence[int] = (8, 16, 32),
    n_classes: int = 10,
    dt: float = 2e-3,
    tau: float = 0.01,
    tau_out: float = 0.02,
    v_th: float = 1.0,
    stem_stride: int = 2,
) -> SpikingResNet:
    """The per-step spiking ResNet; ``dt`` (seconds) is the bin width its cells integrate over."""
    return SpikingResNet(input_shape, channels, n_classes, dt, tau, tau_out, v_th, stem_stride)
