"""The layers import one way (docs/architecture.md), and only the Lava backend imports Lava.

Every import of the three packages is parsed, including those inside functions, and each module
is given its layer. An import may go to its own layer or a lower one, never up; the module graph
has no cycle at all; ``lava`` is imported only by ``simulators/lava_*.py``. A second test runs
``deploy`` and ``quantize`` in a fresh interpreter and checks that no ``lava`` module was loaded.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("toolchain", "exporters", "simulators")

#: (layer, module prefixes), lowest first; the longest matching prefix decides
LAYERS = [
    ("base", ["toolchain", "toolchain.errors", "exporters", "simulators"]),
    ("ir", ["toolchain.ir", "toolchain.data"]),
    ("dynamics", ["toolchain.dynamics"]),
    ("passes", ["toolchain.passes"]),
    ("program", ["toolchain.program"]),
    ("frontends", ["exporters.torch_to_nir", "exporters.snntorch_to_nir", "exporters.checkpoint", "exporters.layers", "exporters.torch_run"]),
    ("loihi", ["toolchain.loihi", "exporters.nir_to_netx"]),
    ("backends", ["simulators.result", "simulators.reference", "simulators.emulator", "simulators.lava_runtime",
                  "simulators.lava_float", "simulators.lava_fixed", "simulators.lava_netx", "simulators.lava_subtract",
                  "simulators.backends", "simulators.host_readout", "simulators.shard_plan", "simulators.ray_executor",
                  "simulators.shards"]),
    ("analysis", ["toolchain.analysis"]),
    ("reports", ["toolchain.reports"]),
    ("api", ["toolchain.api", "toolchain.demo", "toolchain.demo_model"]),
    ("cli", ["toolchain.cli"]),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
LAVA_MODULES = ("simulators.lava_runtime", "simulators.lava_float", "simulators.lava_fixed", "simulators.lava_netx",
                "simulators.lava_subtract")


def modules():
    out = {}
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            parts = p.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


def layer_of(module: str) -> str:
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for pre in prefixes:
            if (module == pre or module.startswith(pre + ".")) and len(pre) > best_len:
                best, best_len = name, len(pre)
    return best


def imports(mods):
    """{module: {imported module: first line}} for every import statement, anywhere in the file."""
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = {}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                if t and t.split(".")[0] in PACKAGES + ("lava",):
                    # the module itself, or the longest project module that contains it
                    while t not in mods and "." in t and t.split(".")[0] != "lava":
                        t = t.rsplit(".", 1)[0]
                    if t != name and (t in mods or t.startswith("lava")):
                        found.setdefault(t, node.lineno)
        edges[name] = found
    return edges


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_imports_go_one_way():
    mods = modules()
    bad = []
    for a, targets in imports(mods).items():
        for b, line in targets.items():
            if b.startswith("lava"):
                continue
            if RANK[layer_of(b)] > RANK[layer_of(a)]:
                bad.append(f"{mods[a].relative_to(REPO)}:{line}: {a} ({layer_of(a)}) imports {b} ({layer_of(b)})")
    assert bad == [], "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    mods = modules()
    edges = {a: [b for b in t if b in mods] for a, t in imports(mods).items()}
    # a module importing its own package's __init__ is not a cycle of code (Python runs __init__ first)
    edges = {a: [b for b in bs if not a.startswith(b + ".")] for a, bs in edges.items()}
    from simulators.emulator import _sccs  # the project's Tarjan (the emulator orders its layers with it)

    cycles = [sorted(c) for c in _sccs(list(edges), edges) if len(c) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def test_only_the_lava_backend_imports_lava():
    mods = modules()
    users = sorted(a for a, t in imports(mods).items() if any(b.startswith("lava") for b in t))
    assert users and set(users) <= set(LAVA_MODULES), users


def test_only_the_ray_executor_imports_ray():
    """Ray is optional (``nirdeploy[ray]``): one module imports it, inside functions."""
    users = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n == "ray" or n.startswith("ray.") for n in names):
                users.append(name)
    assert set(users) == {"simulators.ray_executor"}, users
    tree = ast.parse((REPO / "simulators" / "ray_executor.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any(getattr(n, "module", None) == "ray" or any(a.name == "ray" for a in n.names) for n in top)


DEPLOY_SCRIPT = r"""
import sys, tempfile, os
import numpy as np
import nir
from toolchain import api
from toolchain.ir import make_graph, Discretization

g = make_graph(
    {"input": nir.Input(input_type={"input": np.array([4])}),
     "fc": nir.Affine(weight=np.ones((3, 4)) * 0.5, bias=np.zeros(3)),
     "lif": nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
     "output": nir.Output(output_type={"output": np.array([3])})},
    [("input", "fc"), ("fc", "lif"), ("lif", "output")],
    Discretization(dt=1e-3).to_metadata(),
)
d = tempfile.mkdtemp()
api.export  # the API module itself must not pull Lava in
_, program = api.lower(g)
api.quantize(program)
api.quantize(program, calib_inputs=np.ones((2, 5, 4)))
api.deploy(g, os.path.join(d, "m.net"))
print(" ".join(sorted(m for m in sys.modules if m == "lava" or m.startswith("lava."))))
"""


def test_deploy_and_quantize_load_no_lava():
    out = subprocess.run([sys.executable, "-c", DEPLOY_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"lava modules loaded by deploy/quantize: {out.stdout.strip()[:500]}"


@pytest.mark.parametrize("argv", [["deploy", "--help"], ["inspect", "--help"]])
def test_cli_help_loads_no_lava(argv):
    code = f"import sys; from toolchain.cli.main import build_parser; build_parser(); print(sum(m.startswith('lava') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "0", out.stdout + out.stderr[-1000:]
