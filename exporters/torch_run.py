"""Run a per-step torch/norse model over time and record what each cell emits.

Used to check that an exported graph reproduces the torch model (tests, ``nirdeploy export
--verify``) and by training scripts.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch


def run_torch(
    model: torch.nn.Module,
    x,
    node_modules: Optional[Dict[str, str]] = None,
    dtype=None,
) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """x: [batch, time, *input_shape] -> (outputs [batch, time, ...], {node: cell output [batch, time, ...]}).

    ``node_modules`` maps NIR node names to module paths (an exported graph's
    ``metadata["torch_modules"]``); without it the records are keyed by module path.
    """
    x = torch.as_tensor(np.asarray(x))
    if dtype is not None:
        x = x.to(dtype)
        model = model.to(dtype)
    else:
        x = x.to(next(model.parameters()).dtype)
    paths = node_modules or {name: name for name, m in model.named_modules() if type(m).__module__.startswith("norse.torch.module")}
    mods = dict(model.named_modules())
    records: Dict[str, list] = {k: [] for k in paths}
    hooks = []
    for node, path in paths.items():
        if path not in mods:
            continue

        def hook(mod, inp, out, node=node):
            z = out[0] if isinstance(out, tuple) else out
            records[node].append(z.detach().clone())

        hooks.append(mods[path].register_forward_hook(hook))
    outs = []
    state = None
    try:
        with torch.no_grad():
            for t in range(x.shape[1]):
                out = model(x[:, t], state)
                if isinstance(out, tuple):
                    out, state = out
                outs.append(out.detach().clone())
    finally:
        for h in hooks:
            h.remove()
    stack = lambda lst: torch.stack(lst, dim=1).cpu().numpy()
    return stack(outs), {k: stack(v) for k, v in records.items() if v}
