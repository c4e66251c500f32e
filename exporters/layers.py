"""Torch layers nirdeploy exports that torch itself lacks."""

import torch
import torch.nn.functional as F


class SumPool2d(torch.nn.Module):
    """Sum pooling (NIR's SumPool2d): average pooling times the window area, no padding."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None else kernel_size)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, divisor_override=1)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"
