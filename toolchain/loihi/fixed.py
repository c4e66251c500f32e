"""Fixed-point types: a program's Lava processes in Loihi integers (``FixedNetwork``), and the
rounding helpers that produce them. Built by ``toolchain/loihi/quantize.py``; run by the
lava-fixed backend, the emulator and the netx writer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from toolchain.errors import UnsupportedNodeError
from toolchain.loihi.bits import DECAY_UNITY, WEIGHT_MANT_MAX

# --------------------------------------------------------------------------- data
@dataclass
class FixedGroup:
    """One Lava LIF process in integers (neurons in the process's order, NIR indices ``idx``)."""

    key: str
    node: str
    role: str  # "neuron" | "relay"
    idx: np.ndarray
    depth: int
    spiking: bool
    du: int  # Lava's du: the current decays by (du + 1) / 4096 per step
    dv: int  # the voltage decays by dv / 4096 per step
    vth: int  # threshold mantissa (spike where v > vth << 6)
    bias_mant: np.ndarray  # [n] int64
    bias_exp: int
    scale: float  # K: integer state units per Lava float unit
    v_scale: np.ndarray  # v_nir = v_int / (K v_scale) + v_offset
    v_offset: np.ndarray
    shape3: Optional[Tuple[int, int, int]] = None
    gate: int = 0
    limit: str = ""  # what bounded K
    #: reset by subtraction: v <- v - v_sub (int64, 24-bit state units) where it spiked; None: v <- 0
    v_sub: Optional[np.ndarray] = None
    #: partial reset: v <- ((v_keep v) >> 12) - v_sub where it spiked (int64, 12-bit fractions of 1);
    #: None: 4096 (a pure subtraction)
    v_keep: Optional[np.ndarray] = None
    refractory: int = 0  # v is held at 0 through the step after a spike (snnTorch's delayed zero reset)
    reset_guard: bool = False  # v > vth << 6 after its subtraction: the next decision adds v_sub

    @property
    def n(self) -> int:
        return int(self.idx.size)

    @property
    def bias_eff(self) -> np.ndarray:
        """bias_mant << bias_exp as Lava computes it (int32)."""
        return _shift(self.bias_mant.astype(np.int64), self.bias_exp)


@dataclass
class FixedConn:
    """One Dense or Conv process in integers."""

    key: str
    src: str  # group or input key
    dst: str
    kind: str  # "dense" | "conv"
    graded: bool  # graded input (num_message_bits = 24) or binary spikes
    weights: np.ndarray  # int64; dense [n_dst, n_src] (process orders), conv: Lava kernel (C_out, kX, kY, C_in/g)
    weight_exp: int = 0
    conv: Dict[str, object] = field(default_factory=dict)  # input_shape, padding, stride, dilation, groups, output_shape
    w_float: Optional[np.ndarray] = None  # the float weights it quantizes (Lava float units)


@dataclass
class FixedNetwork:
    """A program in Loihi fixed point: what the lava-fixed backend, the emulator and netx run."""

    program: object
    plan: object  # toolchain.loihi.plan.LavaPlan (structure; n_samples / n_steps are placeholders)
    groups: Dict[str, FixedGroup]
    conns: List[FixedConn]
    profile: str = "netx"
    report: Dict[str, object] = field(default_factory=dict)

    @property
    def inputs(self):
        return self.plan.inputs

    @property
    def node_groups(self) -> Dict[str, List[str]]:
        return self.plan.node_groups

    def conns_into(self, key: str) -> List[FixedConn]:
        return [c for c in self.conns if c.dst == key]

    def base_of(self, key: str) -> Tuple[str, int]:
        """(group or input key without relays, relays in between) of a connection source."""
        g = self.plan.groups.get(key)
        if g is not None and g.relay_of is not None:
            return g.relay_of, g.relay_steps
        return key, 0

    def lag(self, conn: FixedConn) -> int:
        """j: the connection delivers its source's value of reference step k - j at step k."""
        base, r = self.base_of(conn.src)
        if base in self.plan.inputs:
            return int(self.plan.inputs[base].lag)
        return r + self.groups[base].depth + 1 - self.groups[conn.dst].depth

    def with_window(self, n_samples: int, n_steps: int):
        """The plan for a Lava run of ``n_samples`` samples of ``n_steps`` steps."""
        return dataclasses.replace(self.plan, n_samples=int(n_samples), n_steps=int(n_steps))


# --------------------------------------------------------------------------- helpers
def _shift(a: np.ndarray, e: int) -> np.ndarray:
    return np.left_shift(a, e) if e >= 0 else np.right_shift(a, -e)


def _round(x) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64)).astype(np.int64)


def quantize_weights(W: np.ndarray, K: float, e: int) -> np.ndarray:
    """Even integer mantissas 2 round(K W / (128 2^e)), clipped to +-254."""
    m = _round(np.asarray(W, dtype=np.float64) * (K / (128.0 * 2.0**e)))
    return 2 * np.clip(m, -(WEIGHT_MANT_MAX // 2), WEIGHT_MANT_MAX // 2)


def dequantize_weights(w: np.ndarray, K: float, e: int) -> np.ndarray:
    return np.asarray(w, dtype=np.float64) * (64.0 * 2.0**e / K)


def decay_int(d: float, what: str, current: bool) -> int:
    """Float decay (1 - factor) -> Lava's integer (du: iDecay - 1, dv: dv)."""
    if not np.isfinite(d) or d < -1e-12 or d > 1 + 1e-12:
        raise UnsupportedNodeError(
            f"{what}: its {'current' if current else 'voltage'} decay per step is {d:.6g}, outside [0, 1]; "
            f"Loihi's 12-bit decays express only factors between 0 and 1; lava-float and the reference run the graph as it is"
        )
    q = int(np.clip(np.rint(d * DECAY_UNITY), 0, DECAY_UNITY))
    return q - 1 if current else q


