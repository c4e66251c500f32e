"""PyTorch (torch layers + norse cells) -> NIR graph, with the discretization in the metadata.

The model is a *per time step* module, ``out, state = model(x_t, state)`` (for example a
``norse.torch.SequentialState`` of torch layers and norse cells, or your own module that calls
cells and adds tensors for residual connections). It is traced by nirtorch 2.6
(``nirtorch.torch_to_nir``) with nirdeploy's own module map, because:

* norse 1.1.0's ``to_nir`` writes tau multiplied by dt and no v_reset / w_in (norse#411);
* nirtorch 2.6's default Affine map keeps a random bias (NIRTorch PR #55).

Each norse cell becomes the NIR neuron whose discretization under the recorded scheme and input
convention is *exactly* the cell's update (see docs/discretization.md):

====================  ==========  =========  ====================================
norse cell            NIR node    input      parameters
====================  ==========  =========  ====================================
LIFBoxCell            LIF         current    tau = 1/tau_mem_inv, r = 1
LIBoxCell             LI          current    tau = 1/tau_mem_inv, r = 1
LIFCell               CubaLIF     impulse    tau_syn, tau_mem, r = 1, w_in = tau_syn (*)
LICell                CubaLI      impulse    tau_syn, tau_mem, r = 1, w_in = tau_syn
IAFCell               IF          impulse    r = 1
LIFRecurrentCell      Linear -> CubaLIF, with a recurrent Linear back into the CubaLIF
====================  ==========  =========  ====================================

(*) in ``metadata["exact_params"]``; the CubaLIF/CubaLI node itself is written in NIR's held-input
reading, ``r = tau_mem/dt, w_in = tau_syn/tau_mem``, which norse's and snnTorch's importers read
(``_portable_cuba``, docs/interop.md).

All use the ``euler`` scheme (norse integrates with forward Euler, current first). The initial
membrane potential is v_leak (v_reset for IAF), as in norse.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import nir
import numpy as np
import torch

from toolchain import __version__ as NIRDEPLOY_VERSION
from toolchain.errors import NirDeployError, UnsupportedNodeError
from toolchain.ir import Discretization, graph_metadata, make_graph
from toolchain.passes.fold_batchnorm import batchnorm_node
from toolchain.passes.pipelines import run_pipeline

from .layers import SumPool2d


def _np(t) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().numpy().astype(np.float32)


def _inv(t) -> np.ndarray:
    return (1.0 / torch.as_tensor(t, dtype=torch.float64)).detach().cpu().numpy()


# --------------------------------------------------------------------------- module map
def _linear(m: torch.nn.Linear):
    if m.bias is None:
        return nir.Linear(weight=_np(m.weight))
    return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))


def _conv(m):
    pad = m.padding if isinstance(m.padding, str) else np.array(m.padding)
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise UnsupportedNodeError(f"{type(m).__name__} with padding_mode={m.padding_mode!r} is not supported")
    cls = nir.Conv2d if isinstance(m, torch.nn.Conv2d) else nir.Conv1d
    nd = 2 if cls is nir.Conv2d else 1
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
    return cls(
        input_shape=None,
        weight=_np(m.weight),
        stride=np.array(m.stride) if nd == 2 else int(m.stride[0]),
        padding=pad if nd == 2 or isinstance(pad, str) else int(np.asarray(pad).reshape(-1)[0]),
        dilation=np.array(m.dilation) if nd == 2 else int(m.dilation[0]),
        groups=int(m.groups),
        bias=bias,
    )


def _pair(v):
    return np.array((v, v) if isinstance(v, int) else tuple(v))


def _avgpool(m: torch.nn.AvgPool2d):
    if not m.count_include_pad and np.any(_pair(m.padding)):
        raise UnsupportedNodeError("AvgPool2d with count_include_pad=False and padding is not supported")
    if m.ceil_mode or m.divisor_override is not None:
        raise UnsupportedNodeError("AvgPool2d with ceil_mode or divisor_override is not supported")
    stride = m.stride if m.stride is not None else m.kernel_size
    return nir.AvgPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(stride), padding=_pair(m.padding))


def _sumpool(m: SumPool2d):
    return nir.SumPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(m.stride), padding=np.array([0, 0]))


def _lppool(m: torch.nn.LPPool2d):
    if float(m.norm_type) != 1.0:
        raise UnsupportedNodeError(f"LPPool2d with norm_type={m.norm_type} is not supported (only 1: sum pooling)")
    stride = m.stride if m.stride is not None else m.kernel_size
    return nir.SumPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(stride), padding=np.array([0, 0]))


def _flatten(m: torch.nn.Flatten):
    if m.start_dim < 1:
        raise UnsupportedNodeError("Flatten over the batch dimension is not supported")
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    return nir.Flatten(input_type=None, start_dim=m.start_dim - 1, end_dim=end)


def _same_shape(**params) -> Dict[str, np.ndarray]:
    """nir requires all parameters of a neuron to share one shape."""
    arrs = [np.atleast_1d(np.asarray(v)) for v in params.values()]
    out = np.broadcast_arrays(*arrs)
    return {k: np.array(v, dtype=np.float64) for k, v in zip(params, out)}


def _norse_map() -> Dict[type, Any]:
    import norse.torch as nt

    def lif_box(m):
        p = m.p
        return nir.LIF(
            **_same_shape(
                tau=_inv(p.tau_mem_inv), r=1.0, v_leak=_np(p.v_leak), v_threshold=_np(p.v_th), v_reset=_np(p.v_reset)
            )
        )

    def li_box(m):
        p = m.p
        return nir.LI(**_same_shape(tau=_inv(p.tau_mem_inv), r=1.0, v_leak=_np(p.v_leak)))

    def lif(m):
        p = m.p
        tau_syn = _inv(p.tau_syn_inv)
        return nir.CubaLIF(
            **_same_shape(
                tau_syn=tau_syn,
                tau_mem=_inv(p.tau_mem_inv),
                r=1.0,
                v_leak=_np(p.v_leak),
                v_threshold=_np(p.v_th),
                v_reset=_np(p.v_reset),
                w_in=tau_syn,
            )
        )

    def li(m):
        p = m.p
        tau_syn = _inv(p.tau_syn_inv)
        return nir.CubaLI(
            **_same_shape(tau_syn=tau_syn, tau_mem=_inv(p.tau_mem_inv), r=1.0, v_leak=_np(p.v_leak), w_in=tau_syn)
        )

    def iaf(m):
        p = m.p
        return nir.IF(**_same_shape(r=1.0, v_threshold=_np(p.v_th), v_reset=_np(p.v_reset)))

    def lif_rec(m):
        neuron = lif(m)
        n = int(m.hidden_size)
        nodes = {
            "input": nir.Input(input_type={"input": np.array([int(m.input_size)])}),
            "w_in": nir.Linear(weight=_np(m.input_weights)),
            "lif": neuron,
            "w_rec": nir.Linear(weight=_np(m.recurrent_weights)),
            "output": nir.Output(output_type={"output": np.array([n])}),
        }
        edges = [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)

    return {
        nt.LIFBoxCell: lif_box,
        nt.LIBoxCell: li_box,
        nt.LIFCell: lif,
        nt.LICell: li,
        nt.IAFCell: iaf,
        nt.LIFRecurrentCell: lif_rec,
    }


#: norse cell -> (input convention, initial v) of the NIR neuron it becomes
def _norse_conventions() -> Dict[type, Tuple[str, str]]:
    import norse.torch as nt

    return {
        nt.LIFBoxCell: ("current", "v_leak"),
        nt.LIBoxCell: ("current", "v_leak"),
        nt.LIFCell: ("impulse", "v_leak"),
        nt.LICell: ("impulse", "v_leak"),
        nt.IAFCell: ("impulse", "v_reset"),
        nt.LIFRecurrentCell: ("impulse", "v_leak"),
    }


def module_map() -> Dict[type, Any]:
    m = {
        torch.nn.Linear: _linear,
        torch.nn.Conv1d: _conv,
        torch.nn.Conv2d: _conv,
        torch.nn.AvgPool2d: _avgpool,
        torch.nn.LPPool2d: _lppool,
        SumPool2d: _sumpool,
        torch.nn.Flatten: _flatten,
        torch.nn.BatchNorm1d: batchnorm_node,
        torch.nn.BatchNorm2d: batchnorm_node,
    }
    m.update(_norse_map())
    return m


SUPPORTED_MODULES = (
    "nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.LPPool2d(norm_type=1), exporters.layers.SumPool2d, "
    "nn.Flatten, nn.BatchNorm1d/2d (folded), norse LIFBoxCell, LIBoxCell, LIFCell, LICell, IAFCell, "
    "LIFRecurrentCell, and '+' between tensors"
)


# --------------------------------------------------------------------------- tracing
def _trace(model: torch.nn.Module):
    """fx-trace ``model`` with nirtorch; returns (graph, {nir node name: torch module})."""
    import nirtorch
    from nirtorch.torch_tracer import NIRTorchTracer

    mmap = module_map()
    convs = _norse_conventions()
    for name, mod in model.named_modules():
        if type(mod).__module__.startswith("norse") and name and not list(mod.children()) and type(mod) not in mmap:
            if "Cell" in type(mod).__name__ or type(mod).__name__ in ("LIF", "LI", "LIFBox", "LIBox", "IAF"):
                hint = " (export the per-step *Cell version of the layer)" if "Cell" not in type(mod).__name__ else ""
                raise UnsupportedNodeError(
                    f"module {name!r} is a norse {type(mod).__name__}, which nirdeploy cannot export{hint}; "
                    f"supported: {SUPPORTED_MODULES}"
                )
    stateful = set(convs)
    # pass-through modules: identity at inference time
    identity = {torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout2d}
    concrete = None
    import inspect

    params = inspect.signature(model.forward).parameters
    if "state" in params:
        concrete = {"state": None}
    tracer = NIRTorchTracer(tuple(mmap.keys()) + tuple(identity))
    try:
        traced = tracer.trace(model, concrete_args=concrete)
    except Exception as e:  # torch.fx raises many kinds
        raise NirDeployError(f"cannot trace the model with torch.fx: {str(e).splitlines()[0]}") from None
    gm = torch.fx.GraphModule(tracer.root, traced)
    for node in traced.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if type(mod) not in mmap and type(mod) not in identity:
                raise UnsupportedNodeError(
                    f"module {node.target!r} ({type(mod).__name__}) is not supported; supported: {SUPPORTED_MODULES}"
                )
    # identities are removed by giving them a no-op map and splicing them out below
    mmap2 = dict(mmap)
    for cls in identity:
        mmap2[cls] = lambda m: nir.Scale(scale=np.ones(1, dtype=np.float32), metadata={"_identity": 1})
    try:
        graph = nirtorch.torch_to_nir(
            model, mmap2, default_dict=None, type_check=False, stateful_modules=stateful, concrete_args=concrete
        )
    except NirDeployError:
        raise
    except Exception as e:
        raise NirDeployError(f"cannot export the model: {str(e).splitlines()[0]}") from None
    # name NIR nodes after the torch module paths the user knows ("0", "fc1", "block1.conv")
    modules, rename = {}, {}
    for node in traced.nodes:
        if node.op == "call_module":
            if str(node.target) in rename.values():
                raise NirDeployError(f"module {node.target!r} is called more than once per step; nirdeploy cannot export shared layers")
            rename[str(node.name)] = str(node.target)
            modules[str(node.target)] = gm.get_submodule(node.target)
    nodes = {rename.get(k, k): n for k, n in graph.nodes.items()}
    edges = [(rename.get(a, a), rename.get(b, b)) for a, b in graph.edges]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    return graph, modules


def _splice_identities(graph):
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name in [k for k, n in nodes.items() if isinstance(n, nir.Scale) and n.metadata.get("_identity")]:
        ins = [a for a, b in edges if b == name]
        outs = [b for a, b in edges if a == name]
        edges = [(a, b) for a, b in edges if name not in (a, b)] + [(i, o) for i in ins for o in outs]
        del nodes[name]
    return make_graph(nodes, edges, graph_metadata(graph))


def _rename_io(graph):
    """nirtorch names the Input after the forward argument: call it 'input' (and 'output')."""
    ren = {}
    for k, n in graph.nodes.items():
        if isinstance(n, nir.Input):
            ren[k] = "input"
        elif isinstance(n, nir.Output):
            ren[k] = "output"
    if len(set(ren.values())) != len(ren):  # several inputs/outputs: keep names
        return graph
    if any(v in graph.nodes and v not in ren for v in ren.values()):
        return graph
    nodes = {ren.get(k, k): n for k, n in graph.nodes.items()}
    edges = list(dict.fromkeys((ren.get(a, a), ren.get(b, b)) for a, b in graph.edges))
    return make_graph(nodes, edges, graph_metadata(graph))


def _infer_input_shape(model) -> Tuple[int, ...]:
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        return tuple(int(d) for d in shape)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            return (int(m.in_features),)
        if hasattr(m, "input_size") and type(m).__module__.startswith("norse"):
            return (int(m.input_size),)
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
            break
    raise NirDeployError(
        "cannot tell the model's input shape: give input_shape (CLI: --input-shape C,H,W) or set model.input_shape"
    )


def _model_dt(modules: Dict[str, torch.nn.Module], dt: Optional[float]) -> float:
    dts = {name: float(getattr(m, "dt")) for name, m in modules.items() if hasattr(m, "dt") and hasattr(m, "p")}
    values = sorted(set(dts.values()))
    if len(values) > 1:
        raise NirDeployError(f"the model's norse cells use different dt values: {dts}")
    if values:
        if dt is not None and not math.isclose(dt, values[0], rel_tol=1e-9):
            raise NirDeployError(f"dt={dt} was given but the model's cells integrate with dt={values[0]}")
        return values[0]
    if dt is None:
        raise NirDeployError("the model has no norse cells that carry dt; pass dt (CLI: --dt SECONDS)")
    return float(dt)


def _reset_method(modules) -> str:
    from norse.torch.functional.reset import reset_subtract

    kinds = set()
    for m in modules.values():
        p = getattr(m, "p", None)
        if p is not None and hasattr(p, "v_th"):
            kinds.add("subtract" if getattr(p, "reset_method", None) is reset_subtract else "value")
    if len(kinds) > 1:
        raise NirDeployError("the model mixes reset-to-value and reset-by-subtraction cells; NIR records one reset rule")
    return kinds.pop() if kinds else "value"


def export_model(
    model: torch.nn.Module,
    input_shape: Optional[Sequence[int]] = None,
    dt: Optional[float] = None,
    readout: Optional[str] = None,
    extra_metadata: Optional[Dict[str, Any]] = None,
):
    """Export a per-step torch/norse model to a NIR graph carrying its discretization.

    Returns a ``nir.NIRGraph`` whose ``metadata`` holds dt, scheme, input convention, reset,
    initial state, the source framework and version, and the readout rule.
    """
    import norse

    model = model.eval()
    raw, modules = _trace(model)
    convs = _norse_conventions()
    node_conv = {}
    for name, m in modules.items():
        if type(m) in convs:
            conv, vinit = convs[type(m)]
            key = f"{name}.lif" if isinstance(raw.nodes.get(name), nir.NIRGraph) else name
            node_conv[key] = {"input_convention": conv, "v_init": vinit}
    step_dt = _model_dt(modules, dt)
    reset = _reset_method(modules)

    from toolchain.ir import flatten_subgraphs

    g = flatten_subgraphs(raw)
    g = _splice_identities(g)
    g = _rename_io(g)
    in_shape = tuple(int(d) for d in (input_shape or _infer_input_shape(model)))
    inp = [k for k, n in g.nodes.items() if isinstance(n, nir.Input)]
    for k in inp:
        g.nodes[k] = nir.Input(input_type={"input": np.array(in_shape)})

    disc = Discretization(
        dt=step_dt,
        scheme="euler",
        input_convention="current",
        reset=reset,
        v_init="v_leak",
        node_conventions=node_conv,
    )
    meta = disc.to_metadata()
    meta.update(
        {
            "source_framework": "norse" if node_conv else "torch",
            "source_framework_version": norse.__version__ if node_conv else torch.__version__,
            "writer": f"nirdeploy {NIRDEPLOY_VERSION}",
            "readout": readout or "sum",
        }
    )
    if extra_metadata:
        meta.update(extra_metadata)
    g = make_graph(g.nodes, g.edges, meta)
    # BatchNorm folded, parameters per neuron, every node (Output included) declares its shapes
    g = run_pipeline(g, "export")
    tm = {}
    for path in modules:  # node names are module paths; a recurrent cell's neuron is "<path>.lif"
        key = f"{path}.lif" if isinstance(raw.nodes.get(path), nir.NIRGraph) else path
        if key in g.nodes:
            tm[key] = path
    meta["torch_modules"] = tm
    exact = _portable_cuba(g, node_conv, step_dt)
    if exact:
        meta["exact_params"] = exact
    g.metadata = meta
    return g


def _portable_cuba(g, node_conv, dt: float) -> Dict[str, Dict[str, np.ndarray]]:
    """Write each norse LIFCell/LICell (CubaLIF/CubaLI, impulse input) in NIR's own reading.

    The trained model is ``r = 1, w_in = tau_syn`` with the count as an impulse (``i += u``).
    Other tools (norse's ``from_nir``, snnTorch's ``import_from_nir``, the NIR paper's
    convention) read an input as held over the bin, where the same model is ``r w_in = tau_syn /
    dt``; the node gets ``r = tau_mem / dt, w_in = tau_syn / tau_mem``
    (``toolchain.ir.metadata.portable_cuba_params``). The trained values go to
    ``metadata["exact_params"]``, which nirdeploy reads, so its own reading is unchanged bit for bit.
    """
    from toolchain.ir.metadata import CUBA_TYPES, portable_cuba_params

    exact = {}
    for name, conv in node_conv.items():
        node = g.nodes.get(name)
        if type(node).__name__ not in CUBA_TYPES or conv.get("input_convention") != "impulse":
            continue
        r = np.asarray(node.r, dtype=np.float64)
        w_in = np.asarray(node.w_in, dtype=np.float64)
        exact[name] = {"r": r.copy(), "w_in": w_in.copy()}
        port = portable_cuba_params(node.tau_syn, node.tau_mem, r, w_in, dt)
        node.r = np.broadcast_to(port["r"], r.shape).astype(np.float64)
        node.w_in = np.broadcast_to(port["w_in"], w_in.shape).astype(np.float64)
    return exact
