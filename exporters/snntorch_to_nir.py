"""snnTorch (torch layers + snnTorch neurons) -> NIR graph, with the discretization in the metadata.

snnTorch's neurons branch on their state in Python, so torch.fx cannot trace them. The model is
instead *run* once on a zero input with hooks on its leaf modules: the modules called during the
first time step, in call order, must form a chain (each module's input is the previous module's
output), which is what an ``nn.Sequential`` of layers and neurons (``init_hidden=True``) or a
forward that applies ``fc1 -> lif1 -> fc2 -> lif2`` with explicit states computes. A forward
that loops over time is stopped when its first module is called a second time.

snnTorch has no timestep; ``dt`` (CLI ``--dt``) is the bin width the model was trained at. Every
neuron becomes the NIR node whose ``euler`` discretization with the ``impulse`` input convention
is snnTorch's per-step update (docs/snntorch.md):

=============================  =======  ===================================================
snnTorch                       NIR      parameters (a = clamp(beta, 0, 1), b = clamp(alpha, 0, 1))
=============================  =======  ===================================================
Leaky, RLeaky (0 <= a < 1)     LIF      tau = dt / (1 - a), r = tau, v_leak = 0, v_reset = 0
Leaky, RLeaky (a = 1)          IF       r = 1
Synaptic, RSynaptic            CubaLIF  tau_syn = dt / (1 - b), tau_mem = dt / (1 - a),
                                        r = tau_mem / dt, w_in = tau_syn, v_leak = 0
Lapicque                       LIF      a = 1 - time_step / (R C), gain g = time_step / C:
                                        tau = dt / (1 - a), r = g tau
=============================  =======  ===================================================

so that ``A = 1 - dt / tau = a`` and ``B = r / tau = 1`` (CubaLIF: ``A = [[b, 0], [b, a]]``,
``B = [1, 1]``), i.e. ``mem = beta mem + input`` and ``syn = alpha syn + input;
mem = beta mem + syn``. Each time constant is the float64 value nearest ``dt / (1 - a)`` whose
discrete coefficient is ``a`` bit for bit (a search over neighbouring floats; where none exists
the coefficient is within one ulp). The recurrent ``nn.Linear`` of RLeaky / RSynaptic
(``all_to_all``) becomes an Affine back edge (``recurrent_step0 = "bias"``: at step 0 it outputs
its bias, as snnTorch's recurrent Linear does on the zero initial spikes); the one-to-one ``V``
form a Scale back edge.

Reset rules (snnTorch 1.0.0 semantics, derived in docs/snntorch.md), as (reset, reset_delay,
reset_guard) in the metadata:

* ``"subtract"`` with ``reset_delay=True`` (the default; Lapicque always): subtract, delayed.
* ``"subtract"`` with ``reset_delay=False``: subtract, ``reset_guard`` (the next decision is against
  twice the threshold while the subtraction left v above it).
* ``"zero"``: ``value`` (``v_reset = 0``) for Leaky (either delay; it zeroes mem[t-1] before the
  decay) and for Synaptic / RLeaky without the delay; with the delay Synaptic, RLeaky, RSynaptic
  and Lapicque hold v at 0 through the step after a spike: ``value`` with ``reset_delay``.
* ``"none"``: ``none`` (spikes emitted, v never reset).
* RSynaptic's ``reset_delay=False`` acts on the forward's arguments, not on its state, so it has
  no effect in snnTorch 1.0.0 (and fails on ``init_rsynaptic()``'s empty states): its delayed rule.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import nir
import numpy as np
import torch

from toolchain import __version__ as NIRDEPLOY_VERSION
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import Discretization, make_graph
from toolchain.passes.pipelines import run_pipeline

NEURONS = ("Leaky", "Synaptic", "RLeaky", "RSynaptic", "Lapicque")
IDENTITY = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout2d)
SUPPORTED = (
    "snnTorch Leaky, Synaptic, RLeaky, RSynaptic (all_to_all Linear or one-to-one V), Lapicque; nn.Linear, "
    "nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.LPPool2d(norm_type=1), exporters.layers.SumPool2d, nn.Flatten, "
    "nn.BatchNorm1d/2d (folded), nn.Identity, nn.Dropout"
)


def is_snntorch_model(model: torch.nn.Module) -> bool:
    """True when any submodule is an snnTorch module (the model goes to :func:`export_snntorch`)."""
    return any(type(m).__module__.split(".")[0] == "snntorch" for m in model.modules())


def _is_neuron(m) -> bool:
    return type(m).__module__.split(".")[0] == "snntorch" and type(m).__name__ in NEURONS


# --------------------------------------------------------------------------- the chain of modules
class _Stop(Exception):
    """Raised from a hook when the first time step is complete."""


def _units(model) -> Dict[str, torch.nn.Module]:
    """The modules the chain is made of: snnTorch neurons and leaf modules outside them."""
    units: Dict[str, torch.nn.Module] = {}
    inside: List[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if type(m).__module__.split(".")[0] == "snntorch" and not name:
            continue
        if type(m).__module__.split(".")[0] == "snntorch" and isinstance(m, torch.nn.Module) and hasattr(m, "threshold"):
            if not _is_neuron(m):
                raise UnsupportedNodeError(
                    f"module {name!r} is an snnTorch {type(m).__name__}, which nirdeploy cannot export; supported: {SUPPORTED}"
                )
            units[name] = m
            inside.append(name)
        elif name and not list(m.children()):
            units[name] = m
    return units


def _trace(model, in_shape: Tuple[int, ...]):
    """[(module path, module, input shape without batch, input tensor, output tensor)] of the first step."""
    units = _units(model)
    if not units:
        raise NirDeployError("the model has no modules to export")
    batch = 2
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    error = None
    # a per-step forward first, then one that loops over a leading time axis
    for x in (torch.zeros((batch,) + in_shape, dtype=dtype), torch.zeros((1, batch) + in_shape, dtype=dtype)):
        trial = copy.deepcopy(model)  # neurons keep their state in buffers: leave the user's model as it was
        names = {id(m): n for n, m in _units(trial).items()}
        calls: List[list] = []

        def pre(mod, args, names=names, calls=calls):
            name = names[id(mod)]
            if any(c[0] == name for c in calls):
                raise _Stop()
            calls.append([name, args[0] if args else None, None])

        def post(mod, args, out, calls=calls):
            calls[-1][2] = out[0] if isinstance(out, tuple) else out

        hooks = []
        for m in _units(trial).values():
            hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        try:
            with torch.no_grad():
                trial(x)
        except _Stop:
            pass
        except Exception as e:  # the model's own code: report its first line
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            calls.clear()
        finally:
            for h in hooks:
                h.remove()
        first = calls[0][1] if calls else None
        if isinstance(first, torch.Tensor) and tuple(first.shape) == (batch,) + in_shape:
            return [(n, units[n], tuple(int(d) for d in xi.shape[1:]), xi, z) for n, xi, z in calls]
    why = f" ({error})" if error else ""
    raise NirDeployError(
        f"cannot trace the snnTorch model on an input of shape [batch, {', '.join(map(str, in_shape))}]{why}; "
        f"its forward must take one time step [batch, *input_shape] (or loop over [time, batch, *input_shape])"
    )


# --------------------------------------------------------------------------- parameters
def _per_neuron(t, shape, what: str, name: str) -> np.ndarray:
    arr = torch.as_tensor(t).detach().cpu().to(torch.float64).numpy()
    try:
        if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
            arr = arr[0]
        return np.broadcast_to(arr, shape).astype(np.float64).copy()
    except ValueError:
        raise NirDeployError(
            f"module {name!r}: {what} of shape {tuple(arr.shape)} does not fit its layer of shape {tuple(shape)}"
        ) from None


def _search(f, target: np.ndarray, x0: np.ndarray, steps: int = 64) -> np.ndarray:
    """Per element, the float64 nearest ``x0`` (within ``steps`` ulps) with ``f(x) == target``
    bit for bit; ``x0`` where none exists (then f(x0) is within an ulp or two of the target)."""
    x0 = np.asarray(x0, dtype=np.float64)
    best = x0.copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        found = f(x0) == target
        up, dn = x0.copy(), x0.copy()
        for _ in range(steps):
            if found.all():
                break
            up, dn = np.nextafter(up, np.inf), np.nextafter(dn, -np.inf)
            for c in (up, dn):
                ok = ~found & (f(c) == target)
                best = np.where(ok, c, best)
                found |= ok
    return best


def time_constant(a: np.ndarray, dt: float) -> np.ndarray:
    """tau with the euler coefficient ``1 + dt * (-1 / tau) == a`` (0 <= a < 1), as
    toolchain/dynamics/discretize.py computes it."""
    return _search(lambda tau: 1.0 + dt * (-1.0 / tau), a, dt / (1.0 - a))


def _params(m, name: str, shape, dt: float) -> Tuple[Any, str]:
    """(NIR node, what) for snnTorch neuron ``m`` whose layer has ``shape``."""
    kind = type(m).__name__
    what = f"module {name!r} ({kind})"
    thr = _per_neuron(m.threshold, shape, "threshold", name)
    if np.any(thr < 0):
        raise NirDeployError(f"{what} has a negative threshold ({thr.min():g}); snnTorch then resets at step 0 "
                             f"without a spike, which NIR cannot express")  # fmt: skip
    zeros = np.zeros(shape)
    if kind == "Lapicque":
        R = _per_neuron(m.R, shape, "R", name)
        C = _per_neuron(m.C, shape, "C", name)
        ts = _per_neuron(m.time_step, shape, "time_step", name)
        a = 1.0 - ts / (R * C)
        gain = R * (1.0 / (R * C)) * ts
        if np.any(a >= 1) or np.any(~np.isfinite(a)) or np.any(~np.isfinite(gain)):
            raise NirDeployError(f"{what}: its decay 1 - time_step/(R C) is not below 1; no time constant expresses it")
        tau = time_constant(a, dt)
        r = _search(lambda r: r / tau, gain, gain * tau, steps=8)
        return nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=thr, v_reset=zeros.copy()), what
    a = np.clip(_per_neuron(m.beta, shape, "beta", name), 0.0, 1.0)
    if kind in ("Leaky", "RLeaky"):
        if np.all(a == 1.0):
            return nir.IF(r=np.ones(shape), v_threshold=thr, v_reset=zeros), what
        if np.any(a == 1.0):
            raise NirDeployError(f"{what}: beta is 1 (no leak) for some neurons and below 1 for others; one NIR node "
                                 f"(IF or LIF) cannot hold both")  # fmt: skip
        tau = time_constant(a, dt)
        return nir.LIF(tau=tau, r=tau.copy(), v_leak=zeros, v_threshold=thr, v_reset=zeros.copy()), what
    b = np.clip(_per_neuron(m.alpha, shape, "alpha", name), 0.0, 1.0)
    if np.any(a == 1.0) or np.any(b == 1.0):
        raise NirDeployError(f"{what}: alpha or beta is 1 (a state that never decays), which has no CubaLIF time "
                             f"constant")  # fmt: skip
    ts, tm = time_constant(b, dt), time_constant(a, dt)
    r = _search(lambda r: dt * (r / tm), np.ones(shape), tm / dt, steps=8)
    node = nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=r, v_leak=zeros, v_threshold=thr, v_reset=zeros.copy(), w_in=ts.copy())
    return node, what


def _reset_rule(m, name: str) -> Tuple[str, bool, bool]:
    """(nirdeploy reset, reset_delay, reset_guard) of snnTorch neuron ``m`` (docs/snntorch.md)."""
    kind = type(m).__name__
    what = f"module {name!r} ({kind})"
    mech = m.reset_mechanism
    delay = bool(getattr(m, "reset_delay", True))  # Lapicque has no option: its reset is delayed
    if kind == "RSynaptic":
        # snnTorch 1.0.0's RSynaptic applies reset_delay=False to the forward's arguments, not to its
        # state: it has no effect (it fails on the empty init_rsynaptic() states): the delayed rule
        delay = True
    if mech == "none":
        return "none", False, False
    if mech == "subtract":
        # delayed: v_subtract = thr / beta; immediate: snnTorch's "avoid double reset" guard
        return ("subtract", True, False) if delay else ("subtract", False, True)
    if mech == "zero":
        # Leaky zeroes mem[t-1] before the decay (an immediate reset to 0); the others zero the
        # whole next step (held at 0: reset_delay with "value"); without the delay all reset at once
        return "value", bool(delay and kind != "Leaky"), False
    raise NirDeployError(f"{what} has reset_mechanism {mech!r}")  # pragma: no cover - snnTorch checks it


def _rule_name(reset: str, delay: bool, guard: bool) -> str:
    return reset + (" (delayed)" if delay else "") + (" (snnTorch's reset_delay=False)" if guard else "")


def _refuse_unmappable(m, name: str) -> None:
    what = f"module {name!r} ({type(m).__name__})"
    if getattr(m, "inhibition", False):
        raise NirDeployError(f"{what} has inhibition=True (winner-take-all spiking), which NIR cannot express")
    if getattr(m, "state_quant", False):
        raise NirDeployError(f"{what} has state_quant set (quantized states), which NIR cannot express")
    if type(m).__name__ == "RSynaptic" and not getattr(m, "reset_delay", True) and getattr(m, "init_hidden", False):
        raise NirDeployError(f"{what} has reset_delay=False with init_hidden=True, which snnTorch 1.0.0's own forward "
                             f"cannot run (it divides its None spike argument); use reset_delay=True, the same model "
                             f"(with explicit states snnTorch ignores RSynaptic's reset_delay=False)")  # fmt: skip
    g = getattr(m, "graded_spikes_factor", None)
    if g is not None and not bool(torch.all(torch.as_tensor(g) == 1)):
        raise NirDeployError(f"{what} has graded_spikes_factor != 1 (graded spikes), which NIR cannot express")


def _recurrent(m, name: str, shape):
    """The back edge's node of an RLeaky / RSynaptic."""
    from .torch_to_nir import _linear

    if m.all_to_all:
        rec = getattr(m, "recurrent", None)
        if not isinstance(rec, torch.nn.Linear):
            raise UnsupportedNodeError(f"module {name!r} ({type(m).__name__}) has a {type(rec).__name__} recurrent "
                                       f"connection; nirdeploy exports the all_to_all Linear and the one-to-one V forms")  # fmt: skip
        if len(shape) != 1 or rec.in_features != shape[0]:
            raise NirDeployError(f"module {name!r}: its recurrent Linear does not fit its layer of shape {tuple(shape)}")
        return _linear(rec)
    return nir.Scale(scale=_per_neuron(m.V, shape, "V", name).astype(np.float32))


# --------------------------------------------------------------------------- export
def export_snntorch(
    model: torch.nn.Module,
    input_shape: Optional[Sequence[int]] = None,
    dt: Optional[float] = None,
    readout: Optional[str] = None,
    extra_metadata: Optional[Dict[str, Any]] = None,
):
    """Export an snnTorch model to a NIR graph whose metadata reproduces its forward pass."""
    import snntorch

    from .torch_to_nir import _infer_input_shape, module_map

    if dt is None:
        raise NirDeployError("snnTorch models carry no timestep: pass dt, the bin width it was trained at "
                             "(CLI: --dt SECONDS)")  # fmt: skip
    dt = float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise NirDeployError(f"dt must be a positive number of seconds, got {dt!r}")
    model = model.eval()
    in_shape = tuple(int(d) for d in (input_shape or _infer_input_shape(model)))
    for name, m in _units(model).items():  # before the trace: snnTorch's own forward fails on some of these
        if _is_neuron(m):
            _refuse_unmappable(m, name)
            _reset_rule(m, name)
    calls = _trace(model, in_shape)
    mmap = {k: v for k, v in module_map().items() if k.__module__.split(".")[0] in ("torch", "exporters")}
    nodes: Dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges: List[Tuple[str, str]] = []
    modules: Dict[str, str] = {}
    resets: Dict[str, Tuple[str, bool, bool]] = {}
    prev, prev_out = "input", None
    for i, (name, m, shape, x, z) in enumerate(calls):
        if i and x is not prev_out:
            raise NirDeployError(
                f"cannot export the model: the input of module {name!r} is not the output of {calls[i - 1][0]!r}; "
                f"nirdeploy exports snnTorch models whose forward applies its modules one after another "
                f"(use nn.Flatten instead of reshaping in forward)"
            )
        prev_out = z
        if isinstance(m, IDENTITY):
            continue
        if _is_neuron(m):
            node, _ = _params(m, name, shape, dt)
            resets[name] = _reset_rule(m, name)
            nodes[name] = node
            if type(m).__name__ in ("RLeaky", "RSynaptic"):
                nodes[f"{name}.recurrent"] = _recurrent(m, name, shape)
                edges += [(name, f"{name}.recurrent"), (f"{name}.recurrent", name)]
                modules[f"{name}.recurrent"] = f"{name}.recurrent"
        elif type(m) in mmap:
            nodes[name] = mmap[type(m)](m)
        else:
            raise UnsupportedNodeError(f"module {name!r} ({type(m).__name__}) is not supported; supported: {SUPPORTED}")
        edges.append((prev, name))
        modules[name] = name
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(tuple(int(d) for d in prev_out.shape[1:]))})
    edges.append((prev, "output"))
    if not resets:
        raise NirDeployError("the model has no snnTorch neurons to export")
    rules = sorted(set(resets.values()))
    if len(rules) > 1:
        which = ", ".join(f"{k}: {_rule_name(*r)}" for k, r in resets.items())
        raise NirDeployError(f"the model mixes reset rules ({which}); a NIR graph records one reset rule")
    reset, delay, guard = rules[0]
    disc = Discretization(
        dt=dt,
        scheme="euler",
        input_convention="impulse",
        reset=reset,
        reset_delay=delay,
        reset_guard=guard,
        v_init="zero",
        recurrent_step0="bias",
    )
    meta = disc.to_metadata()
    meta.update(
        {
            "source_framework": "snntorch",
            "source_framework_version": snntorch.__version__,
            "writer": f"nirdeploy {NIRDEPLOY_VERSION}",
            "readout": readout or "sum",
        }
    )
    if extra_metadata:
        meta.update(extra_metadata)
    g = run_pipeline(make_graph(nodes, edges, meta), "export")  # BatchNorm folded, parameters per neuron
    meta["torch_modules"] = {k: v for k, v in modules.items() if k in g.nodes}
    g.metadata = meta
    return g
