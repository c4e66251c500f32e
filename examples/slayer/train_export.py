"""A lava-dl SLAYER user's network through nirdeploy: train, export with lava-dl, import, retime, sweep, report.

    python -m examples.slayer.train_export -o slayer_out            # ~1 min on 2 CPU cores
    python -m examples.slayer.train_export -o slayer_out --quick    # a few seconds (the test's mode)

1. trains a tiny SLAYER CUBA network (``slayer.block.cuba.Dense`` 512 -> 64 -> 10) on nirdeploy's
   event digits (``--data digits``: 2 x 16 x 16 DVS events, 100 ms; generated once and cached),
   binned at 2 ms (50 steps), CPU;
2. exports it with lava-dl's own ``export_hdf5`` (each block into ``/layer/<i>``, as lava-dl's
   tutorials do: no input layer, netx takes the input size from the first dense layer) ->
   ``model.net``;
3. ``api.import_netx(model.net, dt=0.002)`` -> ``model.nir`` (the float view of the file's integers;
   ``deploy`` of it gives the same integers back), checks that the emulator gives the same spikes on
   both, and compares with SLAYER's own accuracy;
4. ``api.retime(model.nir, 0.001, "exact")`` -> ``model_1ms.nir`` and ``api.deploy`` ->
   ``model_1ms.net`` (new decays for 1 ms);
5. ``api.sweep(model.nir, ...)`` over 1, 2 and 4 ms and the retiming methods on the emulator ->
   ``sweep/``, and ``api.report`` -> ``report.html`` / ``report.md``.

``summary.json`` records what was done and measured. The CLI equivalent of steps 3 to 5 is in
examples/slayer/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import List, Optional

import numpy as np

TRAIN_DT = 2e-3
NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1, "tau_grad": 0.03, "scale_grad": 3,
          "requires_grad": False}  # fmt: skip
FULL = dict(epochs=6, train_samples=400, test_samples=200, sweep_samples=100)
QUICK = dict(epochs=1, train_samples=50, test_samples=8, sweep_samples=3)


def build(n_in: int, n_hidden: int, n_out: int):
    import torch
    import lava.lib.dl.slayer as slayer

    cuba = slayer.block.cuba
    return torch.nn.ModuleList([
        cuba.Dense(NEURON, n_in, n_hidden, weight_scale=4, weight_norm=False, delay=False),
        cuba.Dense(NEURON, n_hidden, n_out, weight_scale=4, weight_norm=False, delay=False),
    ])  # fmt: skip


def forward(blocks, x):
    for b in blocks:
        x = b(x)
    return x


def export_hdf5(blocks, path: str) -> None:
    """lava-dl's tutorial export: every block writes itself into /layer/<i> (``block.export_hdf5``)."""
    import h5py

    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))


def _binned(split: str, n: int):
    from toolchain.data import open_dataset

    ds = open_dataset(f"digits:{split}")
    ds = ds.subset(np.arange(min(n, len(ds))))
    x, _ = ds.bin_with_info(TRAIN_DT)
    return x.reshape(x.shape[0], x.shape[1], -1), np.asarray(ds.labels)


def train(epochs: int, train_samples: int, test_samples: int, seed: int = 0, log=print):
    """The trained blocks and SLAYER's own test accuracy (spike count readout)."""
    import torch

    torch.manual_seed(seed)
    x, y = _binned("train", train_samples)
    xt, yt = _binned("test", test_samples)
    X = torch.tensor(x, dtype=torch.float32).permute(0, 2, 1)  # SLAYER: [N, C, T]
    Y = torch.tensor(y)
    blocks = build(X.shape[1], 64, 10)
    opt = torch.optim.Adam(blocks.parameters(), lr=0.01)
    t0 = time.time()
    for ep in range(epochs):
        perm = torch.randperm(len(X))
        for i in range(0, len(perm), 25):
            idx = perm[i : i + 25]
            loss = torch.nn.functional.cross_entropy(forward(blocks, X[idx]).mean(-1) * 10, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        log(f"epoch {ep + 1}/{epochs}: loss {float(loss):.3f}")
    with torch.no_grad():
        out = forward(blocks, torch.tensor(xt, dtype=torch.float32).permute(0, 2, 1))
    acc = float((out.sum(-1).argmax(1).numpy() == yt).mean())
    return blocks, acc, time.time() - t0


def run(out_dir: str, quick: bool = False, log=print) -> dict:
    from toolchain import api
    from toolchain.loihi.netx_read import read_netx

    cfg = QUICK if quick else FULL
    os.makedirs(out_dir, exist_ok=True)
    p = lambda name: os.path.join(out_dir, name)  # noqa: E731
    blocks, slayer_acc, train_s = train(cfg["epochs"], cfg["train_samples"], cfg["test_samples"], log=log)
    log(f"SLAYER: test accuracy {slayer_acc:.3f} on {cfg['test_samples']} samples ({train_s:.1f} s training)")
    export_hdf5(blocks, p("model.net"))  # lava-dl's own writer

    # 3. import at the training dt; the emulator on the .net and on the imported graph
    api.import_netx(p("model.net"), TRAIN_DT, output=p("model.nir"))
    _, prog_net = api.load_netx(p("model.net"), TRAIN_DT)
    _, prog_nir = api.lower(p("model.nir"))
    data = api.load_inputs(prog_nir, data="digits", samples=cfg["test_samples"])
    r_net = api.simulate(prog_net, data["x"], "emulator")
    r_nir = api.simulate(prog_nir, data["x"], "emulator")
    same = all(np.array_equal(r_net.spikes[k], r_nir.spikes[k]) for k in r_net.spikes)
    rec = api.run_record(r_net, prog_net, labels=data["labels"], model=p("model.net"))
    log(f"emulator on model.net: accuracy {rec['accuracy']:.3f}; imported model.nir gives the same spikes: {same}")

    # deploy of the imported graph gives the file's integers back
    api.deploy(p("model.nir"), p("model_back.net"))
    a, b = read_netx(p("model.net")), read_netx(p("model_back.net"))
    same_ints = all(np.array_equal(x.w_eff, y.w_eff) and x.neuron == {k: v for k, v in y.neuron.items() if k in x.neuron}
                    and x.weight_exp == y.weight_exp for x, y in zip(a.neuron_layers, b.neuron_layers))  # fmt: skip

    # 4. retime to 1 ms and deploy (new decays)
    api.retime(p("model.nir"), 1e-3, "exact", output=p("model_1ms.nir"))
    api.deploy(p("model_1ms.nir"), p("model_1ms.net"))
    decays = {L.index: (L.neuron["iDecay"], L.neuron["vDecay"]) for L in read_netx(p("model_1ms.net")).neuron_layers}
    log(f"retimed to 1 ms and deployed: model_1ms.net (iDecay, vDecay per layer: {decays})")

    # 5. sweep and report
    sweep = api.sweep(p("model.nir"), "digits", [1e-3, 2e-3, 4e-3], ["tau", "exact", "integral", "euler"],
                      backend="emulator", output=p("sweep"), samples=cfg["sweep_samples"], workers=1, progress=False)  # fmt: skip
    rep = api.report(p("sweep"), p("report.html"), p("report.md"))
    rows = [{"dt": r["dt"], "method": r["method"], "accuracy": r.get("accuracy"), "error": r.get("error")}
            for r in sweep["rows"]]  # fmt: skip
    summary = {
        "quick": quick, "config": cfg, "train_dt": TRAIN_DT, "train_seconds": train_s,
        "slayer_test_accuracy": slayer_acc, "emulator_net_accuracy": rec["accuracy"],
        "imported_graph_same_spikes": bool(same), "deploy_gives_the_files_integers": bool(same_ints),
        "retimed_1ms_decays": {str(k): list(v) for k, v in decays.items()}, "sweep": rows,
        "files": {k: p(v) for k, v in {"net": "model.net", "nir": "model.nir", "net_1ms": "model_1ms.net",
                                       "sweep": "sweep/sweep.json"}.items()},
        "report": rep["paths"],
    }  # fmt: skip
    with open(p("summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    for r in rows:
        log(f"  sweep {r['dt'] * 1e3:g} ms {r['method']:9s} accuracy {r['accuracy']}")
    log(f"wrote {out_dir}/: model.net, model.nir, model_1ms.nir, model_1ms.net, sweep/, report.html, summary.json")
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default="slayer_out", help="output directory")
    ap.add_argument("--quick", action="store_true", help="one epoch on 50 samples, a 3-sample sweep (seconds)")
    args = ap.parse_args(argv)
    run(args.output, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
