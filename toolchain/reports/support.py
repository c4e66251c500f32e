"""The supported-layers table of README.md, produced by running the code rather than written by hand.

Every row is a *pattern*: a small model or NIR graph (built with the project's torch exporter or
with nir's API), the way a user would write it. Every column is a backend of the registry
(``simulators/backends.py``) or the ``.net`` export, and a cell is decided by running that
backend's own code path on the pattern, without starting Lava:

    reference    ``simulators.reference.simulate`` on a tiny input
    emulator     ``toolchain.loihi.quantize.quantize`` + ``simulators.emulator.run_emulator``
    lava-float   ``toolchain.loihi.plan.plan_network(program, 1, 1)`` (what the backend builds
                 its processes from)
    lava-fixed   ``toolchain.loihi.quantize.quantize`` (what the backend builds its processes from)
    netx         ``exporters.nir_to_netx.write_netx(quantize(program, "netx"))`` to a temporary file

A cell reads "yes", "yes (notes)" with what the plan / quantized network / ``.net`` description
shows (Lava Conv, relays, pooling folded, bias units, a host readout, ...), or "refused: reason"
with the refusal (:class:`~toolchain.errors.NirDeployError`) shortened. Anything else a probe
raises is a bug and keeps its traceback.

The rows cover every NIR node type the registries know (``toolchain.ir.metadata.NEURON_TYPES``,
``toolchain.ir.nodes.LINEAR_TYPES``) and the columns every registered backend; building the
table fails when one is missing, so a new type or backend cannot be forgotten.

``python -m toolchain.reports.support`` prints the table, ``--write README.md`` replaces it
between the markers, ``--check README.md`` exits 1 when it differs, ``--full`` prints every
refusal in full (``make readme``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from toolchain.errors import NirDeployError

START = "<!-- support-table:start -->"
END = "<!-- support-table:end -->"
DT = 1e-3  # every pattern runs at 1 ms (graphs without metadata: as with --dt 0.001)
STEPS = 4  # time steps of the tiny probe input


# --------------------------------------------------------------------------- patterns
@dataclass(frozen=True)
class Pattern:
    """One row: ``build() -> NIR graph``; graphs without a timestep in their metadata run at ``DT``
    with the defaults of a graph written elsewhere (``--dt``: exact scheme, current input)."""

    key: str
    source: str  # the first column: what the user writes (Markdown)
    build: Callable[[], object]
    section: str = "torch"  # "torch": exported by exporters/torch_to_nir.py; "nir": written with nir's API


def _export(model, input_shape=None):
    from exporters.torch_to_nir import export_model

    return export_model(model, input_shape=input_shape)


def _seq(*layers, input_shape=None, seed=0):
    import norse.torch as nt
    import torch

    torch.manual_seed(seed)
    return _export(nt.SequentialState(*layers), input_shape)


def _torch():
    import norse.torch as nt
    import torch

    return nt, torch


def _lifbox():
    nt, torch = _torch()
    return nt.LIFBoxCell(nt.LIFBoxParameters(v_th=torch.tensor(0.3)), dt=DT)


def _lif():
    nt, torch = _torch()
    return nt.LIFCell(nt.LIFParameters(v_th=torch.tensor(0.3)), dt=DT)


def _bn(bn):
    """A BatchNorm with the statistics of a trained one (the default one is the identity)."""
    import torch

    with torch.no_grad():
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return bn.eval()


def _linear(n_in=4, n_out=3, bias=True):
    _, torch = _torch()
    return torch.nn.Linear(n_in, n_out, bias=bias)


def _conv_layers(pool=None):
    nt, torch = _torch()
    layers = [torch.nn.Conv2d(2, 4, 3, padding=1), _lifbox()]
    if pool is not None:
        layers.append(pool)
    return layers


def _residual():
    nt, torch = _torch()

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input_shape = (2, 6, 6)
            self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
            self.lif1 = _lifbox()
            self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.shortcut = torch.nn.Conv2d(2, 4, 1)
            self.lif2 = _lifbox()

        def forward(self, x, state=None):
            s = state if state is not None else [None, None]
            z1, s1 = self.lif1(self.conv1(x), s[0])
            z2, s2 = self.lif2(self.conv2(z1) + self.shortcut(x), s[1])
            return z2, [s1, s2]

    torch.manual_seed(0)
    return _export(Residual())


def _recurrent(bias_in: bool):
    nt, torch = _torch()
    cell = nt.LIFRecurrentCell(4, 3, p=nt.LIFParameters(v_th=torch.tensor(0.3)), dt=DT)
    layers = ([_linear(4, 4)] if bias_in else []) + [cell]
    return _seq(*layers)


def _readout(cell, bias: bool):
    return _seq(_linear(4, 5, bias=False), _lifbox(), _linear(5, 3, bias=bias), cell)


def _nir_graph(nodes, edges, metadata=None, n_in: int = 4, n_out: int = 3):
    import nir

    from toolchain.ir import make_graph

    n = dict(nodes)
    n["input"] = nir.Input(input_type={"input": np.array([n_in])})
    n["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return make_graph(n, edges, metadata or {})


def _w(n_out, n_in, seed):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n_out, n_in))


def _nir_neuron(kind: str, n: int = 3):
    import nir

    one, zero = np.ones(n), np.zeros(n)
    tau, th = np.full(n, 0.01), np.full(n, 0.3)
    return {
        "LIF": lambda: nir.LIF(tau=tau, r=one, v_leak=zero, v_threshold=th, v_reset=zero),
        "IF": lambda: nir.IF(r=one, v_threshold=th, v_reset=zero),
        "CubaLIF": lambda: nir.CubaLIF(tau_syn=np.full(n, 0.005), tau_mem=tau, r=one, v_leak=zero, v_threshold=th,
                                       v_reset=zero, w_in=one),  # fmt: skip
        "LI": lambda: nir.LI(tau=tau, r=one, v_leak=zero),
        "CubaLI": lambda: nir.CubaLI(tau_syn=np.full(n, 0.005), tau_mem=tau, r=one, v_leak=zero, w_in=one),
        "I": lambda: nir.I(r=one),
    }[kind]()


def _nir_spiking(kind: str):
    """Input -> Affine (zero bias) -> neuron, as another tool writes it."""
    import nir

    return lambda: _nir_graph(
        {"fc": nir.Affine(weight=_w(3, 4, 1), bias=np.zeros(3)), "neuron": _nir_neuron(kind)},
        [("input", "fc"), ("fc", "neuron"), ("neuron", "output")],
    )


def _nir_readout(kind: str):
    """Input -> Affine -> LIF -> Affine (zero bias) -> non-spiking neuron."""
    import nir

    return lambda: _nir_graph(
        {
            "fc1": nir.Affine(weight=_w(3, 4, 1), bias=np.zeros(3)),
            "lif": _nir_neuron("LIF"),
            "fc2": nir.Affine(weight=_w(3, 3, 2), bias=np.zeros(3)),
            "readout": _nir_neuron(kind),
        },
        [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "readout"), ("readout", "output")],
    )


def _nir_scale():
    import nir

    return _nir_graph(
        {"fc": nir.Linear(weight=_w(3, 4, 1)), "scale": nir.Scale(scale=np.array([0.5, 1.0, 2.0])),
         "lif": _nir_neuron("LIF")},  # fmt: skip
        [("input", "fc"), ("fc", "scale"), ("scale", "lif"), ("lif", "output")],
    )


def _nir_recurrent_bias():
    """A recurrent CubaLIF whose recurrent Affine has a bias (snnTorch's RSynaptic writes these)."""
    import nir

    return _nir_graph(
        {
            "fc": nir.Linear(weight=_w(3, 4, 1)),
            "lif": _nir_neuron("CubaLIF"),
            "rec": nir.Affine(weight=_w(3, 3, 2) * 0.5, bias=np.full(3, 0.2)),
        },
        [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
    )


def _nir_li_hidden():
    """Input -> Affine -> LI -> Affine -> LIF: a non-spiking layer feeding another neuron layer."""
    import nir

    return _nir_graph(
        {
            "fc1": nir.Affine(weight=_w(3, 4, 1), bias=np.zeros(3)),
            "li": _nir_neuron("LI"),
            "fc2": nir.Affine(weight=_w(3, 3, 2), bias=np.zeros(3)),
            "lif": _nir_neuron("LIF"),
        },
        [("input", "fc1"), ("fc1", "li"), ("li", "fc2"), ("fc2", "lif"), ("lif", "output")],
    )


def _nir_subtract():
    """Linear -> LIF that resets by subtraction (snnTorch's and Sinabs' default)."""
    import nir

    from toolchain.ir import Discretization

    return _nir_graph(
        {"fc": nir.Linear(weight=_w(3, 4, 1)), "lif": _nir_neuron("LIF")},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata=Discretization(dt=DT, reset="subtract").to_metadata(),
    )


def _nir_partial():
    """Linear -> LIF with the partial reset a -carry retiming writes (keeps half the excess)."""
    import nir

    from toolchain.ir import Discretization

    return _nir_graph(
        {"fc": nir.Linear(weight=_w(3, 4, 1)), "lif": _nir_neuron("LIF")},
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata=Discretization(dt=DT, reset="partial", reset_keep=0.5).to_metadata(),
    )


def patterns() -> List[Pattern]:
    """The rows, in the table's order (the first few of each neuron kind isolate the layer)."""
    nt, torch = _torch()
    from exporters.layers import SumPool2d

    P = Pattern
    conv_in = (2, 6, 6)
    # fmt: off
    return [
        # --- linear layers, each into a one-state LIF (a bias there goes onto the voltage)
        P("linear", "`nn.Linear` (bias) → `LIFBoxCell`", lambda: _seq(_linear(), _lifbox())),
        P("linear_nobias", "`nn.Linear(bias=False)` → `LIFBoxCell`", lambda: _seq(_linear(bias=False), _lifbox())),
        P("conv2d", "`nn.Conv2d` (stride 2, padding, dilation 2, groups 2) → `LIFBoxCell`",
          lambda: _seq(torch.nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2, groups=2), _lifbox(),
                       input_shape=conv_in)),
        P("conv1d", "`nn.Conv1d` → `LIFBoxCell`",
          lambda: _seq(torch.nn.Conv1d(2, 3, 3), _lifbox(), input_shape=(2, 8))),
        P("flatten", "`nn.Conv2d` → `LIFBoxCell` → `nn.Flatten` → `nn.Linear` → `LIFBoxCell`",
          lambda: _seq(*_conv_layers(), torch.nn.Flatten(), _linear(144, 3), _lifbox(), input_shape=conv_in)),
        P("avgpool", "`nn.AvgPool2d` between conv layers",
          lambda: _seq(*_conv_layers(torch.nn.AvgPool2d(2)), torch.nn.Conv2d(4, 4, 3, padding=1), _lifbox(),
                       input_shape=conv_in)),
        P("sumpool", "sum pooling (`exporters.layers.SumPool2d`) → `nn.Flatten` → `nn.Linear`",
          lambda: _seq(*_conv_layers(SumPool2d(2)), torch.nn.Flatten(), _linear(36, 3), _lifbox(),
                       input_shape=conv_in)),
        P("lppool", "`nn.LPPool2d(1, k)` (sum pooling) between conv layers",
          lambda: _seq(*_conv_layers(torch.nn.LPPool2d(1, 2)), torch.nn.Conv2d(4, 4, 3, padding=1), _lifbox(),
                       input_shape=conv_in)),
        P("batchnorm1d", "`nn.Linear` → `nn.BatchNorm1d` → `LIFBoxCell`",
          lambda: _seq(_linear(), _bn(torch.nn.BatchNorm1d(3)), _lifbox())),
        P("batchnorm2d", "`nn.Conv2d` → `nn.BatchNorm2d` → `LIFBoxCell`",
          lambda: _seq(torch.nn.Conv2d(2, 4, 3, padding=1), _bn(torch.nn.BatchNorm2d(4)), _lifbox(),
                       input_shape=conv_in)),
        P("residual", "residual `a + b` (conv → LIF → conv, plus a 1×1 conv shortcut from the input)", _residual),
        # --- norse neurons
        P("iaf", "`nn.Linear` (bias) → `IAFCell`",
          lambda: _seq(_linear(), nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(0.3))))),
        P("lif_nobias", "`nn.Linear(bias=False)` → `LIFCell`", lambda: _seq(_linear(bias=False), _lif())),
        P("lif_bias", "`nn.Linear` (bias) → `LIFCell`", lambda: _seq(_linear(), _lif())),
        P("lif_batchnorm", "`nn.Linear(bias=False)` → `nn.BatchNorm1d` → `LIFCell`",
          lambda: _seq(_linear(bias=False), _bn(torch.nn.BatchNorm1d(3)), _lif())),
        P("lif_batchnorm2d", "`nn.Conv2d` → `nn.BatchNorm2d` → `LIFCell`",
          lambda: _seq(torch.nn.Conv2d(2, 4, 3, padding=1), _bn(torch.nn.BatchNorm2d(4)), _lif(),
                       input_shape=conv_in)),
        P("lifrec", "`LIFRecurrentCell`", lambda: _recurrent(False)),
        P("lifrec_bias", "`nn.Linear` (bias) → `LIFRecurrentCell`", lambda: _recurrent(True)),
        P("libox", "… → `nn.Linear(bias=False)` → `LIBoxCell` readout",
          lambda: _readout(nt.LIBoxCell(dt=DT), False)),
        P("libox_bias", "… → `nn.Linear` (bias) → `LIBoxCell` readout",
          lambda: _readout(nt.LIBoxCell(dt=DT), True)),
        P("li", "… → `nn.Linear(bias=False)` → `LICell` readout", lambda: _readout(nt.LICell(dt=DT), False)),
        P("li_bias", "… → `nn.Linear` (bias) → `LICell` readout", lambda: _readout(nt.LICell(dt=DT), True)),
        # --- graphs written elsewhere (no metadata: run with --dt)
        P("nir_lif", "LIF", _nir_spiking("LIF"), "nir"),
        P("nir_if", "IF", _nir_spiking("IF"), "nir"),
        P("nir_cubalif", "CubaLIF", _nir_spiking("CubaLIF"), "nir"),
        P("nir_li", "LI readout", _nir_readout("LI"), "nir"),
        P("nir_cubali", "CubaLI readout", _nir_readout("CubaLI"), "nir"),
        P("nir_i", "I (integrator) readout", _nir_readout("I"), "nir"),
        P("nir_scale", "Scale", _nir_scale, "nir"),
        P("nir_li_hidden", "non-spiking hidden layer (LI feeding a LIF layer)", _nir_li_hidden, "nir"),
        P("nir_rec_bias", "recurrent CubaLIF whose recurrent Affine has a bias", _nir_recurrent_bias, "nir"),
        P("nir_subtract", "LIF with reset by subtraction (metadata `reset: subtract`)", _nir_subtract, "nir"),
        P("nir_partial", "LIF with a partial reset (`exact-carry` / `integral-carry` retiming)", _nir_partial, "nir"),
    ]
    # fmt: on


# --------------------------------------------------------------------------- probes
@dataclass
class Cell:
    ok: bool
    notes: Tuple[str, ...] = ()
    reason: str = ""  # the refusal in full

    @property
    def text(self) -> str:
        if not self.ok:
            return f"refused: {shorten(self.reason)}"
        return "yes" + (f" ({'; '.join(self.notes)})" if self.notes else "")


def shorten(msg: str, limit: int = 80) -> str:
    """The gist of a refusal: without the node it names, asides, numbers and the advice after ';'."""
    m = str(msg).strip().splitlines()[0] if str(msg).strip() else "refused"
    m = re.sub(r"^(node|layer) '[^']*'( \([^)]*\))?:?\s*", "", m)
    m = m.split(";")[0]
    m = re.sub(r"\s*\((?:e\.g\.|v <-|[^()]*\d)[^()]*\)", "", m)  # asides: examples, formulas, numbers
    m = re.sub(r" of -?\d[\d.e+-]*", "", m)
    m = re.sub(r"\s+", " ", m).strip().rstrip(".,:")
    for cut in (": ", ", which ", ", but "):
        if len(m) > limit and cut in m:
            m = m.split(cut)[0]
    if len(m) > limit:
        m = m[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return m


def tiny_input(program) -> np.ndarray:
    """[1 sample, STEPS, *input shape] of ones: integer counts every backend takes."""
    return np.ones((1, STEPS) + tuple(int(s) for s in program.input_shape))


def lower_pattern(graph):
    from toolchain.ir import discretization_of, graph_metadata
    from toolchain.program import lower

    dt = None if "dt" in graph_metadata(graph) else DT
    return lower(graph, discretization_of(graph, dt=dt))


_COMPOSED = ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Scale")


def plan_notes(plan) -> List[str]:
    """What a Lava plan shows about how the layers were mapped (``toolchain.loihi.plan``)."""
    from toolchain.program.interpreter import sources_through_linear

    program = plan.program
    notes: List[str] = []
    groups = list(plan.groups.values())
    # a bias unit (an always-on neuron or input channel whose weights are the biases): a group with
    # role "bias", or a group / input whose key says so
    if any(g.role == "bias" or "bias" in g.key for g in groups) or any("bias" in k for k in plan.inputs):
        notes.append("bias unit")
    if any(c.kind == "conv" for c in plan.conns):
        notes.append("Lava Conv")
    composed = []
    for name, keys in plan.node_groups.items():
        dense_in = any(c.kind == "dense" and c.dst in keys and not c.key.startswith(tuple(f"{k}->" for k in keys))
                       for c in plan.conns)  # fmt: skip
        if not dense_in:
            continue
        for paths in sources_through_linear(program, name).values():
            for path in paths:
                for op in path:
                    t = program.ops[op].type
                    if t in _COMPOSED and t not in composed and not (t == "Conv2d" and _is_lava_conv(plan, name)):
                        composed.append(t)
    if composed:
        notes.append(f"{', '.join(composed)} composed into a Dense")
    if len(plan.inputs) > 1:
        notes.append("a delayed copy of the input aligns the paths")
    relays = sum(g.role == "relay" for g in groups)
    if relays:
        notes.append(f"{relays} relay layer{'s' if relays > 1 else ''} align the paths")
    readouts = [g.node for g in groups if g.role == "neuron" and not g.spiking]
    if readouts:
        notes.append("non-spiking readout: v recorded")
    err = max([float(f.error) for f in plan.forms.values()] + [0.0])
    if err > 0:
        notes.append(f"projected onto Loihi's CUBA form, error {err:.1%}")
    return notes


def _is_lava_conv(plan, name) -> bool:
    keys = plan.node_groups.get(name, [])
    return any(c.kind == "conv" and c.dst in keys for c in plan.conns)


def _folded_pooling(program, fx) -> List[str]:
    from toolchain.ir.nodes import POOL_TYPES

    before = {op.type for op in program.ops.values() if op.type in POOL_TYPES}
    after = {op.type for op in fx.program.ops.values() if op.type in POOL_TYPES}
    return [f"{', '.join(sorted(before - after))} folded into the next layer"] if before - after else []


def _fixed_notes(program, fx) -> List[str]:
    notes = _folded_pooling(program, fx) + plan_notes(fx.plan)
    if any(getattr(g, "role", "") == "bias" for g in fx.groups.values()) and "bias unit" not in notes:
        notes.insert(0, "bias unit")
    return notes


def probe_reference(program) -> Cell:
    from simulators.reference import simulate

    simulate(program, tiny_input(program))
    return Cell(True)


def probe_lava_float(program) -> Cell:
    from toolchain.loihi.plan import plan_network

    return Cell(True, tuple(plan_notes(plan_network(program, 1, 1))))


def probe_lava_fixed(program) -> Cell:
    from toolchain.loihi.quantize import quantize

    fx = quantize(program)
    return Cell(True, tuple(_fixed_notes(program, fx)))


def probe_emulator(program) -> Cell:
    from simulators.emulator import run_emulator
    from toolchain.loihi.quantize import quantize

    fx = quantize(program)
    run_emulator(program, tiny_input(program), quant=fx, engine="numpy")
    return Cell(True, tuple(n for n in _fixed_notes(program, fx) if n != "Lava Conv"))  # it emulates the Conv




def probe_netx(program) -> Cell:
    from exporters.nir_to_netx import write_netx
    from toolchain.loihi.quantize import quantize

    fx = quantize(program, profile="netx")
    with tempfile.TemporaryDirectory(prefix="nirdeploy-support-") as d:
        desc = write_netx(fx, os.path.join(d, "m.net"))
    kinds: List[str] = []
    for layer in desc.get("layers", [])[1:]:
        if layer["type"] not in kinds:
            kinds.append(layer["type"])
    notes = [" + ".join(kinds)] if kinds else []
    notes += [n for n in _fixed_notes(program, fx) if n == "bias unit" or n.endswith("folded into the next layer")]
    if any(v for k, v in desc.items() if k.startswith("host")):  # e.g. "host_readout": part of it runs on the host
        notes.append("host readout")
    return Cell(True, tuple(notes))


@dataclass(frozen=True)
class Column:
    header: str
    probe: Callable[[object], Cell]
    backend: Optional[str] = None  # the registered backend it stands for (None: the .net export)


COLUMNS: List[Column] = [
    Column("reference", probe_reference, "reference"),
    Column("emulator", probe_emulator, "emulator"),
    Column("Lava float", probe_lava_float, "lava-float"),
    Column("Lava fixed", probe_lava_fixed, "lava-fixed"),
    Column("netx `.net`", probe_netx),
]


def run_probe(column: Column, program) -> Cell:
    try:
        return column.probe(program)
    except NirDeployError as e:
        return Cell(False, reason=str(e))


# --------------------------------------------------------------------------- coverage
def check_coverage(graphs: Dict[str, object], columns: Sequence[Column] = COLUMNS) -> None:
    """Every neuron and linear NIR type the registries know appears in some row, and every
    registered backend has a column; raise naming what is missing."""
    from simulators.backends import BACKENDS
    from toolchain.ir.metadata import NEURON_TYPES
    from toolchain.ir.nodes import LINEAR_TYPES, node_type

    seen = {node_type(n) for g in graphs.values() for n in g.nodes.values()}
    missing = [t for t in tuple(NEURON_TYPES) + tuple(LINEAR_TYPES) if t not in seen]
    if missing:
        raise AssertionError(f"no row of the support table has a node of type {', '.join(missing)}: add a pattern")
    no_col = [b for b in BACKENDS if b not in {c.backend for c in columns}]
    if no_col:
        raise AssertionError(f"the support table has no column for the backend(s) {', '.join(no_col)}: add a probe")


# --------------------------------------------------------------------------- the table
def nir_chain(program) -> str:
    """The pattern's NIR nodes: the longest forward path from the input, ``A → B``; a neuron with
    a recurrent input adds ``(recurrent T)``; nodes off that path follow as ``skip X → T → Y``."""
    ops = program.ops
    succ = {n: [m for m in program.order if n in program.preds(m)] for n in program.order}
    best: Dict[str, List[str]] = {}  # the longest path from n to an output (back edges are not in preds)
    for n in reversed(program.order):
        tails = [best[m] for m in succ[n] if best.get(m)]
        best[n] = [n] + max(tails, key=len) if tails else ([n] if ops[n].kind == "output" else [])
    chain = best[program.input_name]
    on = set(chain)

    def label(n):
        t = "Input" if ops[n].kind == "input" else ops[n].type
        rec = [ops[b].type for b in program.back_preds(n)]
        return t + (f" (recurrent {', '.join(rec)})" if rec else "")

    shown = [n for n in chain if ops[n].kind not in ("input", "output")]
    text = " → ".join(label(n) for n in shown)
    backs = {b for n in program.order for b in program.back_preds(n)}
    for n in program.order:  # off-path segments that start at a node on the path
        if n in on or n in backs or not any(p in on for p in program.preds(n)):
            continue
        seg, cur = [next(p for p in program.preds(n) if p in on)], n
        while cur not in on and cur not in backs:
            seg.append(cur)
            nxt = succ[cur]
            if len(nxt) != 1:
                break
            cur = nxt[0]
        seg.append(cur)
        text += "; skip " + " → ".join(label(x) for x in seg)
    return text


@dataclass
class Row:
    pattern: Pattern
    nir: str
    cells: Dict[str, Cell] = field(default_factory=dict)


def probe_all(pats: Optional[Sequence[Pattern]] = None, columns: Sequence[Column] = COLUMNS) -> List[Row]:
    full = pats is None
    pats = list(patterns() if full else pats)
    graphs = {p.key: p.build() for p in pats}
    if full:
        check_coverage(graphs, columns)
    rows = []
    for p in pats:
        program = lower_pattern(graphs[p.key])
        row = Row(p, nir_chain(program))
        for c in columns:
            row.cells[c.header] = run_probe(c, program)
        rows.append(row)
    return rows


def _esc(s: str) -> str:
    return s.replace("|", "\\|")


SECTIONS = {
    "torch": "PyTorch / norse 1.1.0",
    "nir": "NIR graph written elsewhere (no metadata; run with `--dt`)",
}


def render(rows: Sequence[Row], columns: Sequence[Column] = COLUMNS) -> str:
    """The Markdown table, one table per section (the first column's header names the source)."""
    out: List[str] = []
    for sec, title in SECTIONS.items():
        sec_rows = [r for r in rows if r.pattern.section == sec]
        if not sec_rows:
            continue
        if out:
            out.append("")
        head = [title, "NIR"] + [c.header for c in columns]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for r in sec_rows:
            cells = [r.pattern.source, r.nir] + [r.cells[c.header].text for c in columns]
            out.append("| " + " | ".join(_esc(x) for x in cells) + " |")
    return "\n".join(out) + "\n"


LEGEND = """\
Generated from the code by `make readme` (`python -m toolchain.reports.support --write README.md`;
`tests/test_support_table.py` fails when this copy is stale). Each row is a small model exported
with `exporters/torch_to_nir.py` (BatchNorm is folded into the layer before it, so the NIR column
shows none) or a graph written with nir's API; each column runs its own code path on it without
starting Lava: the reference simulates it, the emulator quantizes and runs it, Lava float plans its
processes, Lava fixed quantizes it, `.net` writes the file. `yes (...)` adds what the plan, the
fixed-point network or the `.net` shows; `refused: ...` is the gist of the one-line error the
command prints (exit status 2; `python -m toolchain.reports.support --full` prints them whole). A
`…` row ends a `Linear → LIFBoxCell` network with the named readout. Graphs from other tools run
with `--dt` as the exact scheme with current input (`--scheme`, `--input-convention` change that,
`--source-dt` retimes them); a two-state neuron under the exact scheme is not Loihi's CUBA form and
is projected onto it (the error is that of v's impulse response). Lava and the emulator take
integer event counts.
"""


def generate() -> str:
    """The text between the markers: table and legend."""
    return render(probe_all()) + "\n" + LEGEND


def replace_between_markers(text: str, block: str) -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise NirDeployError(f"the file needs one {START} line followed by one {END} line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block.rstrip()}\n{END}{tail}"


def current_block(text: str) -> str:
    """What stands between the markers of ``text`` now."""
    _, rest = text.split(START, 1)
    return rest.split(END, 1)[0].strip("\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toolchain.reports.support", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", metavar="README", help="replace the table between the markers of this file")
    ap.add_argument("--check", metavar="README", help="exit 1 when this file's table differs from the generated one")
    ap.add_argument("--full", action="store_true", help="print every refusal in full")
    args = ap.parse_args(argv)
    if args.full:
        for r in probe_all():
            for h, c in r.cells.items():
                if not c.ok:
                    print(f"{r.pattern.key:16s} {h:12s} {c.reason}")
        return 0
    block = generate()
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            if current_block(f.read()) != block.strip("\n"):
                print(f"{args.check}: the supported-layers table is out of date; run make readme", file=sys.stderr)
                return 1
        return 0
    if args.write:
        with open(args.write, encoding="utf-8") as f:
            text = f.read()
        new = replace_between_markers(text, block)
        if new != text:
            from toolchain.ir.atomic import atomic_path

            with atomic_path(args.write) as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"wrote the supported-layers table into {args.write}")
        else:
            print(f"{args.write}: the supported-layers table is up to date")
        return 0
    sys.stdout.write(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
