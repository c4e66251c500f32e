"""The emulator: a batched integer implementation of Lava's bit-accurate Loihi arithmetic.

``run_emulator(program, inputs)`` quantizes ``program`` (``toolchain/loihi/quantize.py``; or takes a
:class:`~toolchain.loihi.quantize.FixedNetwork`) and computes, for all samples at once, exactly what
Lava's fixed-point process models compute (``lava/proc/dense/models.py`` PyDenseModelBitAcc,
``lava/proc/conv/models.py`` PyConvModelFixed, ``lava/proc/lif/models.py`` PyLifModelBitAcc /
PyLifResetModelBitAcc; see the module docstring of ``toolchain/loihi/quantize.py``), including the
integer types Lava computes in:

* Dense, binary input: ``a = (sum of w over the spiking inputs) << e`` (``>> -e``: floor),
  computed in int64 and wrapped to int32 when sent;
  graded input: the sum is int32 (numpy ``dot`` of int32 arrays wraps), then shifted in int32.
* Conv: the exact sum, wrapped to 24 bits (``signed_clamp``); no weight exponent.
* Several connections into one process are added in int32.
* LIF: ``a_in << 6`` in int32; the decayed current ``sign(P) (|P| >> 12)`` (truncation toward
  zero) cast to int32, plus the input in int32, then wrapped once at 24 bits exactly as Lava
  does (``> 2^23``: minus 2^24, ``<= -2^23``: plus 2^24); the voltage likewise, plus
  ``bias_mant << bias_exp``, clipped to +-(2^23 - 1); spike where ``v > vth << 6``; v <- 0, or
  for a group that resets by subtraction (``FixedGroup.v_sub``, Lava process
  ``simulators/lava_subtract.py``) v <- v - v_sub (per neuron, int) where it spiked; a partial
  reset (``FixedGroup.v_keep``) v <- ((v_keep v) >> 12) - v_sub; snnTorch's
  held zero reset (``FixedGroup.refractory``) and ``reset_delay=False`` guard
  (``FixedGroup.reset_guard``) as in ``LIFSnnTorchReset``, on the step-by-step numpy path.

Time: the result lines up step for step with the reference (``simulators/reference.py``), like
the Lava backends: every Dense/Conv hop's one-step latency is compensated by the layer depths of
the Lava plan, relays are exact identity delays (and therefore skipped here), a bias unit is a
source that spikes at every step (from step j of a sample for a unit of lag j), a back edge delivers
its source's value of the previous step and every sample starts from zero state (the windows,
resets and gates of the Lava run). A connection therefore delivers its source's value of
reference step ``k - j`` at step ``k`` (``FixedNetwork.lag``).

Speed: connections from already computed layers are evaluated for all steps of a batch at once
as one matrix product (float32 or float64 BLAS where every partial sum is an exactly
representable integer, int64 otherwise); the neuron recurrence runs in a numba kernel
(parallel over samples) when numba is installed, in vectorized numpy otherwise (``engine``).
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from simulators.result import SimResult
from toolchain.errors import NirDeployError
from toolchain.loihi.plan import check_integer_inputs, host_outputs
from toolchain.loihi.quantize import quantize

M24 = 1 << 23
ENGINES = ("auto", "numba", "numpy")

def numba_cache_dir() -> str:
    """Where numba caches the compiled kernels: ``$NUMBA_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/nirdeploy/numba`` (default ``~/.cache/nirdeploy/numba``), never the installed
    package's ``__pycache__`` (which may be read-only, or shared by several installs)."""
    import os

    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nirdeploy", "numba")


try:  # numba ships with the test extras (neurobench); without it the numpy engine runs
    import os as _os

    # numba reads NUMBA_CACHE_DIR when it is first imported; if something imported it before,
    # its config is set directly (the decorators below read it when they compile)
    _os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_dir())
    import numba as _numba

    _numba.config.CACHE_DIR = _os.environ["NUMBA_CACHE_DIR"]

    HAVE_NUMBA = True
    # numba's default threading layer here is GNU OpenMP, which does not survive fork(): a forked
    # child that runs a parallel kernel is terminated. Lava's runtime and the sweep's process pool
    # fork, so the emulator uses numba's own work queue (chosen before the first parallel launch;
    # NUMBA_THREADING_LAYER still overrides it).
    if "NUMBA_THREADING_LAYER" not in _os.environ:
        _numba.config.THREADING_LAYER = "workqueue"
except Exception:  # pragma: no cover - depends on the environment
    _numba = None
    HAVE_NUMBA = False


# --------------------------------------------------------------------------- integer helpers
def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's complement int32 wrap of int64 values (what a numpy int32 cast / int32 arithmetic does)."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def wrap24(x: np.ndarray) -> np.ndarray:
    """lava.proc.conv.utils.signed_clamp(x, bits=24): (x + 2^23) mod 2^24 - 2^23."""
    return ((np.asarray(x, dtype=np.int64) + M24) & ((1 << 24) - 1)) - M24


def shift(a: np.ndarray, e: int) -> np.ndarray:
    return np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)


def _exact_matmul(S: np.ndarray, W: np.ndarray, bound: float, cache: Optional[dict] = None) -> np.ndarray:
    """S [m, n_src] @ W.T [n_src, n_dst] exactly (every partial sum is below ``bound``).

    Returns int32 when ``bound`` < 2^31, int64 otherwise.
    """
    if bound < 2**24:
        dt = torch.float32
    elif bound < 2**53:
        dt = torch.float64
    else:  # pragma: no cover - needs inputs beyond 2^45 or so
        return S.astype(np.int64) @ W.T.astype(np.int64)
    wt = None if cache is None else cache.get(dt)
    if wt is None:
        wt = torch.from_numpy(np.ascontiguousarray(W.T)).to(dt)
        if cache is not None:
            cache[dt] = wt
    r = torch.from_numpy(np.ascontiguousarray(S)).to(dt) @ wt
    return r.to(torch.int32 if bound < 2**31 else torch.int64).numpy()


def _conv_torch(k: np.ndarray, p: dict, S_nir: np.ndarray, bound: float) -> np.ndarray:
    """Lava Conv (kernel ``k`` in torch layout, parameters ``p`` in Lava (X, Y) order) on S [m, C, H, W]."""
    import torch.nn.functional as F

    dt = torch.float32 if bound < 2**24 else torch.float64
    out = F.conv2d(
        torch.from_numpy(np.ascontiguousarray(S_nir)).to(dt),
        torch.from_numpy(k).to(dt),
        None,
        tuple(int(v) for v in p["stride"][::-1]),
        tuple(int(v) for v in p["padding"][::-1]),
        tuple(int(v) for v in p["dilation"][::-1]),
        int(p["groups"]),
    )
    return out.reshape(out.shape[0], -1).to(torch.int32 if bound < 2**31 else torch.int64).numpy()


class _Conn:
    """A connection prepared for the emulator: source (without relays), lag and integer weights.

    Activity is kept in NIR order inside the emulator (each group's neurons sorted by their NIR
    index), so the Dense matrices are permuted once here and a Conv needs no reordering.
    """

    def __init__(self, fx, c, order: Dict[str, np.ndarray]):
        self.c = c
        base, _ = fx.base_of(c.src)
        self.is_input = base in fx.plan.inputs
        self.src = "@input" if self.is_input else base
        self.j = fx.lag(c)
        self.kind = c.kind
        self.graded = c.graded
        self.e = int(c.weight_exp)
        src_perm = np.argsort(fx.plan.inputs[base].idx) if self.is_input else order[base]
        dst_perm = order[c.dst]
        W = np.asarray(c.weights, dtype=np.int64)
        self._cache: dict = {}
        if self.kind == "dense":
            self.W = np.ascontiguousarray(W[dst_perm][:, src_perm])
            self.wT = np.ascontiguousarray(self.W.T)
            self.row_abs = float(np.abs(self.W).sum(axis=1).max(initial=0))
        else:
            self.W = W
            self.row_abs = float(np.abs(W).reshape(W.shape[0], -1).sum(axis=1).max(initial=0))
            # (C_out, C_in/g, H, W); a copy, not ascontiguousarray: a 1x1 kernel would keep its negative strides
            self.k_torch = W[:, ::-1, ::-1, :].transpose(0, 3, 2, 1).copy(order="C")
            X, Y, C = c.conv["input_shape"]
            self.nir_in = (C, Y, X)
            n_src = fx.plan.inputs[base].idx.size if self.is_input else fx.groups[base].n
            if n_src != C * X * Y or fx.groups[c.dst].n != int(np.prod(c.conv["output_shape"])):  # pragma: no cover
                raise NirDeployError(f"connection {c.key!r}: a Conv must connect whole layers")

    def bound(self, smax: float) -> float:
        """Largest |port value| before any wrap for sources up to ``smax`` in magnitude."""
        b = self.row_abs * max(smax, 1.0)
        return b * 2.0**self.e if self.kind == "dense" else b

    def value(self, S: np.ndarray, smax: float) -> np.ndarray:
        """Port value (int32 values, as int32 or int64) for source values S [m, n_src] (NIR order)."""
        bound = self.row_abs * max(smax, 1.0)
        if self.kind == "dense":
            acc = _exact_matmul(S, self.W, bound, self._cache)
            if self.e == 0 and bound < 2**31:
                return acc
            acc = acc.astype(np.int64)
            if self.graded:  # weights.dot(s_in) on int32 arrays: int32 accumulation, int32 shift
                acc = wrap32(acc)
                return wrap32(shift(acc, self.e)) if self.e > 0 else shift(acc, self.e)
            return wrap32(shift(acc, self.e))
        out = _conv_torch(self.k_torch, self.c.conv, S.reshape((S.shape[0],) + self.nir_in), bound)
        return out if bound < M24 else wrap24(out)


# --------------------------------------------------------------------------- LIF
def _params(g, perm=None) -> Tuple[int, int, int, np.ndarray]:
    fu = 4096 - (int(g.du) + 1)
    fv = 4096 - int(g.dv)
    vth64 = int(np.left_shift(np.int32(g.vth), 6))
    bias = wrap32(g.bias_eff)
    return fu, fv, vth64, (bias if perm is None else bias[perm])


def _sub(g, perm=None) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(per-neuron subtraction amounts int64 [n], kept fractions int64 [n] in 1/4096ths, whether the
    group resets by subtraction); zeros for reset to zero."""
    if g.v_sub is None:
        return np.zeros(g.n, np.int64), np.zeros(g.n, np.int64), False
    sub = np.asarray(g.v_sub, dtype=np.int64)
    keep = getattr(g, "v_keep", None)
    kp = np.full(g.n, 4096, np.int64) if keep is None else np.asarray(keep, dtype=np.int64)
    return (sub if perm is None else sub[perm]), (kp if perm is None else kp[perm]), True


def _snntorch_rule(g) -> Optional[str]:
    """"hold" / "guard" for a group with one of snnTorch's reset rules (LIFSnnTorchReset), else None."""
    if getattr(g, "refractory", 0):
        return "hold"
    if getattr(g, "reset_guard", False):
        return "guard"
    return None


def lif_step(u, v, a_in, fu, fv, vth64, bias, st=None, sub=None, kp=None, rule=None, held=None):
    """One bit-accurate LIF update on int64 arrays holding Lava's int32 values; returns (u, v, s).

    ``kp``: a partial reset's kept fractions (1/4096ths; None: a pure subtraction). ``rule`` "hold" / "guard" with ``held`` (bool [B, n], updated in place): snnTorch's rules of
    simulators/lava_subtract.py's LIFSnnTorchReset."""
    act = wrap32(wrap32(a_in) << 6)
    p = u * fu
    d = wrap32(np.where(p >= 0, p >> 12, -((-p) >> 12)))
    dc = wrap32(d + act)
    wrapped = (dc > M24) | (dc <= -M24)
    u = np.where(dc > M24, dc - 2 * M24, np.where(dc <= -M24, dc + 2 * M24, dc))
    q = v * fv
    dvv = wrap32(np.where(q >= 0, q >> 12, -((-q) >> 12)))
    vn = wrap32(dvv + u + bias)
    v = np.clip(vn, -M24 + 1, M24 - 1)
    if st is not None:
        st[0] = max(st[0], int(np.abs(dc).max(initial=0)))
        st[1] = max(st[1], int(np.abs(vn).max(initial=0)))
        st[2] += int(np.count_nonzero(wrapped))
        st[3] += int(np.count_nonzero(vn != v))
    if rule == "hold":
        v = np.where(held, 0, v)
        s = v > vth64
        v = np.where(s, 0, v)
        held[...] = s
        return u, v, s
    if rule == "guard":
        s = v > vth64 + np.where(held, sub, 0)
        v = np.where(s, v - sub, v)
        held[...] = v > vth64
        return u, v, s
    s = v > vth64
    if sub is None:
        v = np.where(s, 0, v)
    else:
        v = np.where(s, (v if kp is None else (kp * v) >> 12) - sub, v)
    return u, v, s


def _scan_numpy(a, fu, fv, vth64, bias, rec, z, vout, st, sub=None, kp=None):
    """LIF over time on a [B, T, n] (sum of external port values); rec: [(W, e)] self connections."""
    B, T, n = a.shape
    u = np.zeros((B, n), np.int64)
    v = np.zeros((B, n), np.int64)
    s = np.zeros((B, n), bool)
    for k in range(T):
        ain = a[:, k]
        for W, e in rec:
            acc = s.astype(np.int64) @ W.T if k else np.zeros((B, n), np.int64)
            ain = ain + wrap32(shift(acc, e))
        u, v, s = lif_step(u, v, ain, fu, fv, vth64, bias, st, sub, kp)
        z[:, k] = s
        if vout is not None:
            vout[:, k] = v


if HAVE_NUMBA:

    @_numba.njit(cache=True, inline="always")
    def _w32(x):
        return ((x + 2147483648) & 0xFFFFFFFF) - 2147483648

    @_numba.njit(cache=True, inline="always")
    def _tdiv(p):
        return (p >> 12) if p >= 0 else -((-p) >> 12)

    @_numba.njit(parallel=True, cache=True)
    def _scan_numba(a, fu, fv, vth64, bias, wrecT, e_rec, has_rec, z, vout, record_v, st, sub, kp, has_sub):
        B, T, n = a.shape
        M = 8388608
        for b in _numba.prange(B):
            u = np.zeros(n, np.int64)
            v = np.zeros(n, np.int64)
            s = np.zeros(n, np.uint8)
            acc = np.zeros(n, np.int64)
            m_u = 0
            m_v = 0
            n_w = 0
            n_s = 0
            for k in range(T):
                if has_rec:
                    for i in range(n):
                        acc[i] = 0
                    for jj in range(n):
                        if s[jj]:
                            for i in range(n):
                                acc[i] += wrecT[jj, i]
                for i in range(n):
                    ain = a[b, k, i]
                    if has_rec:
                        r = acc[i]
                        if e_rec > 0:
                            r = r << e_rec
                        else:
                            r = r >> (-e_rec)
                        ain += _w32(r)
                    ain = _w32(ain)
                    act = _w32(ain << 6)
                    d = _w32(_tdiv(u[i] * fu))
                    dc = _w32(d + act)
                    if dc > M:
                        uu = dc - 2 * M
                        n_w += 1
                    elif dc <= -M:
                        uu = dc + 2 * M
                        n_w += 1
                    else:
                        uu = dc
                    u[i] = uu
                    adc = dc if dc >= 0 else -dc
                    if adc > m_u:
                        m_u = adc
                    vn = _w32(_w32(_tdiv(v[i] * fv)) + uu + bias[i])
                    avn = vn if vn >= 0 else -vn
                    if avn > m_v:
                        m_v = avn
                    vv = vn
                    if vv > M - 1:
                        vv = M - 1
                        n_s += 1
                    elif vv < -M + 1:
                        vv = -M + 1
                        n_s += 1
                    if vv > vth64:
                        s[i] = 1
                        vv = ((kp[i] * vv) >> 12) - sub[i] if has_sub else 0
                    else:
                        s[i] = 0
                    v[i] = vv
                    z[b, k, i] = s[i] != 0
                    if record_v:
                        vout[b, k, i] = vv
            st[b, 0] = m_u
            st[b, 1] = m_v
            st[b, 2] = n_w
            st[b, 3] = n_s

    @_numba.njit(parallel=True, cache=True)
    def _fused_numba(src, src64, packed, wT, e, graded, j, fu, fv, vth64, bias, wrecT, e_rec, has_rec, z, vout, record_v, st,
                     sub, kp, has_sub):  # fmt: skip
        """Like _scan_numba, with the input of one Dense connection computed event by event.

        src [B, T, n_src]: the source's values (spikes or graded input) in NIR order; wT [n_src, n]:
        the Dense weights transposed (int32 when no sum can leave int32, as the caller checks);
        j: its lag. ``packed``: binary spikes also given as src64 [B, T, n_src / 8] (eight neurons
        per uint64 word), so that silent groups of eight are skipped at once. Only nonzero sources are visited (Lava's binary Dense sums the weights of the
        spiking inputs in int64; the graded one multiplies and sums in int32).
        """
        B, T, n_src = src.shape
        n = wT.shape[1]
        M = 8388608
        for b in _numba.prange(B):
            sb = src[b]
            zb = z[b]
            u = np.zeros(n, np.int64)
            v = np.zeros(n, np.int64)
            s = np.zeros(n, np.uint8)
            acc = np.zeros(n, wT.dtype)
            racc = np.zeros(n, wrecT.dtype)
            ain = np.zeros(n, np.int64)
            m_u = 0
            m_v = 0
            n_w = 0
            n_s = 0
            for k in range(T):
                for i in range(n):
                    acc[i] = 0
                if k >= j and packed:
                    sk64 = src64[b, k - j]
                    for wq in range(sk64.size):
                        word = sk64[wq]
                        if word != 0:
                            for t8 in range(8):
                                if (word >> np.uint64(8 * t8)) & np.uint64(0xFF):
                                    q = 8 * wq + t8
                                    for i in range(n):
                                        acc[i] += wT[q, i]
                elif k >= j:
                    sk = sb[k - j]
                    for q in range(n_src):
                        xv = sk[q]
                        if xv != 0:
                            if graded:
                                xw = wT.dtype.type(xv)
                                for i in range(n):
                                    acc[i] += wT[q, i] * xw
                            else:
                                for i in range(n):
                                    acc[i] += wT[q, i]
                if has_rec:
                    for i in range(n):
                        racc[i] = 0
                    for jj in range(n):
                        if s[jj]:
                            for i in range(n):
                                racc[i] += wrecT[jj, i]
                for i in range(n):  # port values (loop-invariant branches)
                    p = np.int64(acc[i])
                    if graded:
                        p = _w32(p)
                        if e > 0:
                            p = _w32(p << e)
                        else:
                            p = p >> (-e)
                    elif e != 0:
                        if e > 0:
                            p = p << e
                        else:
                            p = p >> (-e)
                        p = _w32(p)
                    if has_rec:
                        r = np.int64(racc[i])
                        if e_rec > 0:
                            r = r << e_rec
                        else:
                            r = r >> (-e_rec)
                        p += _w32(r)
                    ain[i] = _w32(p)
                for i in range(n):  # the LIF update, branch-free so that it vectorizes
                    act = _w32(ain[i] << 6)
                    pu = u[i] * fu
                    dc = _w32(((pu + ((pu >> 63) & 4095)) >> 12) + act)  # trunc toward zero, then int32
                    hi = dc > M
                    lo = dc <= -M
                    uu = dc - hi * (2 * M) + lo * (2 * M)
                    n_w += hi | lo
                    m_u = max(m_u, abs(dc))
                    u[i] = uu
                    pv = v[i] * fv
                    vn = _w32(((pv + ((pv >> 63) & 4095)) >> 12) + uu + bias[i])
                    m_v = max(m_v, abs(vn))
                    vc = min(max(vn, -M + 1), M - 1)
                    n_s += vc != vn
                    spk = vc > vth64
                    s[i] = spk
                    # v <- 0 (kp = sub = 0), v - sub (kp = 4096) or the partial reset ((kp v) >> 12) - sub
                    vv = vc - spk * (vc - ((kp[i] * vc) >> 12) + sub[i])
                    v[i] = vv
                    zb[k, i] = spk
                if record_v:
                    for i in range(n):
                        vout[b, k, i] = v[i]
            st[b, 0] = m_u
            st[b, 1] = m_v
            st[b, 2] = n_w
            st[b, 3] = n_s


# --------------------------------------------------------------------------- schedule
def _sccs(nodes: List[str], edges: Dict[str, List[str]]) -> List[List[str]]:
    """Strongly connected components in topological order (Tarjan, iterative enough for layer counts)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on: set = set()
    stack: List[str] = []
    out: List[List[str]] = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    out.reverse()  # Tarjan emits sinks first
    return out


class Schedule:
    """Groups in evaluation order, with the connections into each (relays skipped)."""

    def __init__(self, fx):
        self.fx = fx
        order = [k for k, g in fx.groups.items() if g.role == "neuron"]
        pos = {k: i for i, k in enumerate(order)}
        order.sort(key=lambda k: (fx.groups[k].depth, pos[k]))
        #: bias units: always-on sources (one spike every step of a sample; their lag delays the start)
        self.bias_units = [k for k, g in fx.groups.items() if g.role == "bias"]
        #: per group: process positions in NIR order (the emulator's neuron order)
        self.order = {k: np.argsort(fx.groups[k].idx, kind="stable") for k in order + self.bias_units}
        self.into: Dict[str, List[_Conn]] = {k: [] for k in order}
        for c in fx.conns:
            if c.dst in self.into:
                self.into[c.dst].append(_Conn(fx, c, self.order))
        succ: Dict[str, List[str]] = {k: [] for k in order}
        for k, cs in self.into.items():
            for c in cs:
                if not c.is_input and c.src in succ:
                    succ[c.src].append(k)
        self.sccs = _sccs(order, succ)
        rank = {k: i for i, k in enumerate(order)}
        self.sccs = [sorted(comp, key=rank.get) for comp in self.sccs]
        for comp in self.sccs:
            for k in comp:
                for c in self.into[k]:
                    if not c.is_input and c.src in comp and c.j == 0 and rank[c.src] >= rank[k]:  # pragma: no cover
                        raise NirDeployError(f"the connections into {fx.groups[k].node!r} form a loop without delay")


# --------------------------------------------------------------------------- running
def _fusable(sched, k) -> bool:
    """One external Dense input (any lag, binary or graded) and at most one Dense from itself (lag 1)."""
    into = sched.into[k]
    ext = [c for c in into if c.is_input or c.src != k]
    rec = [c for c in into if not c.is_input and c.src == k]
    return (
        len(ext) == 1
        and ext[0].kind == "dense"
        and len(rec) <= 1
        and all(c.kind == "dense" and not c.graded and c.j == 1 for c in rec)
    )


def emulate(
    fx,
    x: np.ndarray,
    record_v: bool = False,
    stats: bool = False,
    batch_size: int = 256,
    engine: str = "auto",
    progress: bool = False,
) -> Dict[str, Dict[str, np.ndarray]]:
    """Run integer inputs x [N, T, n_in] (flat NIR order) through FixedNetwork ``fx``.

    Returns {"spikes": {group: bool [N, T, n]}, "v": {group: int32 [N, T, n]} (recorded groups:
    all with ``record_v``, else the non-spiking ones), "stats": {group: {max_abs_u, max_abs_v,
    u_wraps, v_saturations}} (with ``stats``)}. A group's neurons are in NIR order
    (``np.sort(group.idx)``), not in the Lava process's order.
    """
    if engine not in ENGINES:
        raise NirDeployError(f"unknown emulator engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "numba" and not HAVE_NUMBA:
        raise NirDeployError("the numba engine needs the numba package")
    use_numba = HAVE_NUMBA and engine != "numpy"
    sched = getattr(fx, "_schedule", None)
    if sched is None:
        sched = Schedule(fx)
        fx._schedule = sched
    N, T = x.shape[0], x.shape[1]
    keys = [k for comp in sched.sccs for k in comp]
    spikes = {k: np.zeros((N, T, fx.groups[k].n), dtype=bool) for k in keys}
    want_v = {k for k in keys if record_v or not fx.groups[k].spiking}
    vs = {k: np.zeros((N, T, fx.groups[k].n), dtype=np.int32) for k in want_v}
    st_all = {k: np.zeros(4, dtype=np.int64) for k in keys}
    starts = list(range(0, N, max(1, int(batch_size))))
    it = starts
    if progress and len(starts) > 1:
        from tqdm import tqdm

        it = tqdm(starts, desc="emulator", unit="batch", leave=False)
    for s0 in it:
        xb = x[s0 : s0 + batch_size]
        B = xb.shape[0]
        vals: Dict[str, np.ndarray] = {}
        vals["@input"] = xb
        vmax = {"@input": float(np.abs(xb).max(initial=0))}
        for bk in sched.bias_units:
            vals[bk] = np.ones((B, T, fx.groups[bk].n), dtype=np.uint8)
            vmax[bk] = 1.0
        for comp in sched.sccs:
            special = any(_snntorch_rule(fx.groups[k]) for k in comp)  # the step-by-step numpy path runs them
            if use_numba and len(comp) == 1 and _fusable(sched, comp[0]) and not special:
                k0 = comp[0]
                g = fx.groups[k0]
                ext_c = [c for c in sched.into[k0] if c.is_input or c.src != k0]
                rec = [c for c in sched.into[k0] if not c.is_input and c.src == k0]
                c = ext_c[0]
                fu, fv, vth64, bias = _params(g, sched.order[k0])
                z = spikes[k0][s0 : s0 + B]
                vout = np.zeros((B, T, g.n), dtype=np.int64) if k0 in want_v else None
                st = np.zeros((B, 4), dtype=np.int64)
                small = c.row_abs * max(vmax[c.src], 1.0) < 2**31 and (not rec or rec[0].row_abs < 2**31)
                wdt = np.int32 if small else np.int64
                S = vals[c.src]
                packed = (not c.graded) and S.dtype == np.uint8 and S.shape[-1] % 8 == 0 and S.flags.c_contiguous
                S64 = S.view(np.uint64) if packed else np.zeros((1, 1, 1), np.uint64)
                sub, kp, has_sub = _sub(g, sched.order[k0])
                _fused_numba(
                    S, S64, packed, c.wT.astype(wdt), c.e, c.graded, c.j, fu, fv, vth64, bias.astype(np.int64),
                    rec[0].wT.astype(wdt) if rec else np.zeros((1, 1), wdt), rec[0].e if rec else 0, bool(rec),
                    z, vout if vout is not None else np.zeros((1, 1, 1), np.int64), vout is not None, st, sub, kp, has_sub,
                )  # fmt: skip
                _merge(st_all[k0], np.array([st[:, 0].max(initial=0), st[:, 1].max(initial=0), st[:, 2].sum(), st[:, 3].sum()]))
                vals[k0] = z.view(np.uint8)
                vmax[k0] = 1.0
                if vout is not None:
                    vs[k0][s0 : s0 + B] = vout
                continue
            ext: Dict[str, np.ndarray] = {}
            internal: Dict[str, List[_Conn]] = {k: [] for k in comp}
            for k in comp:
                n = fx.groups[k].n
                total = sum(min(c.bound(vmax.get(c.src, 1.0)), 2.0**31) for c in sched.into[k])
                a = None
                for c in sched.into[k]:
                    if not c.is_input and c.src in comp:
                        internal[k].append(c)
                        continue
                    S = vals[c.src]
                    if c.j >= T:
                        continue
                    Ssh = S[:, : T - c.j] if c.j else S
                    val = c.value(Ssh.reshape(-1, Ssh.shape[-1]), vmax[c.src]).reshape(B, T - c.j, n)
                    if a is None and c.j == 0 and (total < 2**31 or val.dtype == np.int64):
                        a = val  # the only (or first) port: no copy
                        continue
                    if a is None:
                        a = np.zeros((B, T, n), dtype=np.int32 if total < 2**31 else np.int64)
                    elif total >= 2**31 and a.dtype != np.int64:
                        a = a.astype(np.int64)
                    a[:, c.j :] += val
                ext[k] = a if a is not None else np.zeros((B, T, n), dtype=np.int32)
            single = len(comp) == 1
            k0 = comp[0]
            rec = internal[k0] if single else []
            fast = (
                use_numba
                and single
                and len(rec) <= 1
                and all(c.kind == "dense" and not c.graded and c.j == 1 and c.src == k0 for c in rec)
            )
            if not special and single and (fast or all(c.kind == "dense" and not c.graded and c.j == 1 and c.src == k0
                                                       for c in rec)):  # fmt: skip
                g = fx.groups[k0]
                fu, fv, vth64, bias = _params(g, sched.order[k0])
                z = spikes[k0][s0 : s0 + B]  # written in place (bool)
                vout = np.zeros((B, T, g.n), dtype=np.int64) if k0 in want_v else None
                if fast:
                    st = np.zeros((B, 4), dtype=np.int64)
                    wrecT = np.ascontiguousarray(rec[0].W.T) if rec else np.zeros((1, 1), np.int64)
                    _scan_numba(
                        ext[k0], fu, fv, vth64, bias.astype(np.int64), wrecT, rec[0].e if rec else 0, bool(rec),
                        z, vout if vout is not None else np.zeros((1, 1, 1), np.int64), vout is not None, st,
                        *_sub(g, sched.order[k0]),
                    )  # fmt: skip
                    stb = np.array([st[:, 0].max(initial=0), st[:, 1].max(initial=0), st[:, 2].sum(), st[:, 3].sum()])
                else:
                    stb = np.zeros(4, dtype=np.int64)
                    sub, kp, has_sub = _sub(g, sched.order[k0])
                    _scan_numpy(ext[k0], fu, fv, vth64, bias, [(c.W, c.e) for c in rec], z, vout, stb,
                                sub if has_sub else None, kp)  # fmt: skip
                _merge(st_all[k0], stb)
                vals[k0] = z.view(np.uint8)
                vmax[k0] = 1.0
                if vout is not None:
                    vs[k0][s0 : s0 + B] = vout
            else:
                _scan_component(fx, sched, comp, ext, internal, T, want_v, spikes, vs, vals, vmax, st_all, s0, B)
    out: Dict[str, Dict] = {"spikes": spikes, "v": vs}
    if stats:
        out["stats"] = {
            k: {"max_abs_u": int(s[0]), "max_abs_v": int(s[1]), "u_wraps": int(s[2]), "v_saturations": int(s[3])}
            for k, s in st_all.items()
        }
    return out


def _merge(acc: np.ndarray, new: np.ndarray) -> None:
    acc[0] = max(acc[0], int(new[0]))
    acc[1] = max(acc[1], int(new[1]))
    acc[2] += int(new[2])
    acc[3] += int(new[3])


def _scan_component(fx, sched, comp, ext, internal, T, want_v, spikes, vs, vals, vmax, st_all, s0, B):
    """Step-by-step numpy evaluation of a strongly connected set of groups (recurrent loops)."""
    state = {}
    for k in comp:
        g = fx.groups[k]
        state[k] = [np.zeros((B, g.n), np.int64), np.zeros((B, g.n), np.int64), np.zeros((B, g.n), bool)]
        vals[k] = np.zeros((B, T, g.n), dtype=np.uint8)
        vmax[k] = 1.0
    stb = {k: np.zeros(4, dtype=np.int64) for k in comp}
    for t in range(T):
        for k in comp:
            g = fx.groups[k]
            fu, fv, vth64, bias = _params(g, sched.order[k])
            ain = ext[k][:, t].astype(np.int64)
            for c in internal[k]:
                if t - c.j < 0:
                    continue
                ain += c.value(vals[c.src][:, t - c.j], 1.0)
            sub, kp, has_sub = _sub(g, sched.order[k])
            u, v, s = lif_step(state[k][0], state[k][1], ain, fu, fv, vth64, bias, stb[k], sub if has_sub else None, kp,
                               _snntorch_rule(g), state[k][2])  # fmt: skip
            state[k] = [u, v, state[k][2]]
            vals[k][:, t] = s
            spikes[k][s0 : s0 + B, t] = s
            if k in want_v:
                vs[k][s0 : s0 + B, t] = v
    for k in comp:
        _merge(st_all[k], stb[k])


def to_result(fx, x: np.ndarray, out: Dict[str, Dict], record_v: bool, backend: str, order: str = "nir") -> SimResult:
    """Group activity (integers; neurons in NIR order, or in Lava process order with ``order="process"``)
    -> a SimResult in the reference's layout."""
    program = fx.program
    N, T = x.shape[0], x.shape[1]
    idx = (lambda k: fx.groups[k].idx) if order == "process" else (lambda k: np.sort(fx.groups[k].idx))
    spikes: Dict[str, np.ndarray] = {}
    vs: Dict[str, np.ndarray] = {}
    for node, keys in fx.node_groups.items():
        op = program.ops[node]
        n = op.ssm.n
        if fx.groups[keys[0]].spiking:
            z = np.zeros((N, T, n), dtype=bool)
            for k in keys:
                z[:, :, idx(k)] = out["spikes"][k]
            spikes[node] = z.reshape((N, T) + tuple(op.out_shape))
        if all(k in out["v"] for k in keys):
            v = np.zeros((N, T, n))
            for k in keys:
                g = fx.groups[k]
                p = slice(None) if order == "process" else np.argsort(g.idx, kind="stable")
                v[:, :, idx(k)] = (out["v"][k] / (g.scale * g.v_scale[p])) + g.v_offset[p]
            vs[node] = v.reshape((N, T) + tuple(op.out_shape))
    values = {}
    for s in fx.plan.host_sources:
        op = program.ops[s]
        if op.kind == "input":
            values[s] = x.astype(np.float64).reshape((N, T) + tuple(op.out_shape))
        elif s in spikes:
            values[s] = spikes[s].astype(np.float64)
        else:
            values[s] = vs[s]
    outputs = host_outputs(program, values)
    if not record_v:
        vs = {}
    return SimResult(
        backend=backend,
        dt=program.disc.dt,
        n_steps=T,
        outputs=outputs,
        spikes=spikes,
        v=vs,
        layer_types={op.name: op.type for op in program.neurons()},
        layer_sizes={op.name: op.ssm.n for op in program.neurons()},
    )


def fixed_point_summary(fx) -> Dict[str, dict]:
    """Per neuron node: the scale(s) K and the rounding errors of the quantization (for run records)."""
    out = {}
    for row in fx.report.get("layers", []):
        out[row["node"]] = {
            "scale": row["scale"],
            "vth_mant": row["vth_mant"],
            "weight_max_rel_error": row["weight_max_rel_error"],
            "threshold_rel_error": row["threshold_rel_error"],
            "decay_max_abs_error": row["decay_max_abs_error"],
        }
    return out


def saturation_summary(fx, stats: Dict[str, dict]) -> Dict[str, dict]:
    """Per neuron node: largest |u| / |v| reached (integers, before wrap / clip) and wrap / saturation counts."""
    out = {}
    for node, keys in fx.node_groups.items():
        st = [stats[k] for k in keys if k in stats]
        if not st:
            continue
        out[node] = {
            "max_abs_u": max(s["max_abs_u"] for s in st),
            "max_abs_v": max(s["max_abs_v"] for s in st),
            "u_wraps": sum(s["u_wraps"] for s in st),
            "v_saturations": sum(s["v_saturations"] for s in st),
        }
    return out


def run_emulator(
    program,
    inputs,
    record_v: bool = False,
    progress: bool = False,
    quant=None,
    profile: str = "netx",
    batch_size: int = 256,
    engine: str = "auto",
) -> SimResult:
    """Run ``inputs`` [samples, steps, *input_shape] (integer counts) through ``program`` in Loihi fixed point.

    ``quant``: a :class:`~toolchain.loihi.quantize.FixedNetwork` of this program (default: quantize it
    with ``profile``, without calibration). The result's ``info`` carries the quantization
    profile and, per layer, the largest states reached and how often u wrapped or v saturated.
    """
    t0 = time.perf_counter()
    x = check_integer_inputs(program, inputs)
    netx = getattr(program, "netx_fixed", None)  # a lava-dl .net: its own integers (toolchain/loihi/netx_read.py)
    if quant is None and netx is not None:
        from toolchain.loihi.netx_read import emulator_input

        fx = netx
        t1 = time.perf_counter()
        out = emulate(fx, emulator_input(fx.netx, x), record_v=record_v, stats=True, batch_size=batch_size,
                      engine=engine, progress=progress)  # fmt: skip
        res = to_result(fx, x, out, record_v, "emulator")
        res.info.update(quantization="netx file", source=fx.netx.path, saturation=saturation_summary(fx, out["stats"]),
                        engine="numba" if (HAVE_NUMBA and engine != "numpy") else "numpy",
                        quantize_seconds=t1 - t0, run_seconds=time.perf_counter() - t1)  # fmt: skip
        return res
    fx = quant if quant is not None else quantize(program, profile=profile)
    if fx.program is not program and [o.name for o in fx.program.neurons()] != [o.name for o in program.neurons()]:
        raise NirDeployError("the quantized network passed as quant= belongs to a different program")
    t1 = time.perf_counter()
    out = emulate(fx, x, record_v=record_v, stats=True, batch_size=batch_size, engine=engine, progress=progress)
    t2 = time.perf_counter()
    res = to_result(fx, x, out, record_v, "emulator")
    res.info.update(
        quantization=fx.profile,
        fixed_point=fixed_point_summary(fx),
        cuba_error={k: f.error for k, f in fx.plan.forms.items()},
        engine="numba" if (HAVE_NUMBA and engine != "numpy") else "numpy",
        saturation=saturation_summary(fx, out["stats"]),
        quantize_seconds=t1 - t0,
        run_seconds=t2 - t1,
    )
    return res


def state_stats(fx, x: np.ndarray, batch_size: int = 256) -> Dict[str, dict]:
    """The states every group of ``fx`` reaches on integer inputs ``x``: the ``measure`` that
    calibration (``toolchain.loihi.quantize.quantize``) needs."""
    return emulate(fx, x, stats=True, batch_size=batch_size)["stats"]


def calibrated_quantize(program, calib_inputs, profile: str = "netx", batch_size: int = 256):
    """``quantize(program)`` with its scales lowered where the emulator, run on ``calib_inputs``
    (integer counts), finds states near the 24-bit range; the report shows the states reached."""
    return quantize(
        program, calib_inputs=calib_inputs, profile=profile, measure=lambda fx, x: state_stats(fx, x, batch_size)
    )
