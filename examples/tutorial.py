"""nirdeploy in one script: train a tiny norse SNN, export it in memory, retime it, run it on the
reference and on Lava, deploy it for Loihi and write a report. Copy it and change the model.

The model trains on the default task in 4 ms bins (25 steps per sample: fast) and is retimed
zero-shot for a sensor that delivers 2 ms bins; the reference method (``tau``: keep the time
constants, change dt) is run beside the integral method for comparison.

    python -m examples.tutorial                 # writes tutorial_out/
    python -m examples.tutorial --out DIR --seconds 10   # a shorter training budget

Everything goes through the public API, ``toolchain.api`` (docs/api.md).
"""

from __future__ import annotations

import argparse
import os
import time

import norse.torch as nt
import numpy as np
import torch

from toolchain import api
from toolchain.analysis.records import write_json
from toolchain.data import open_dataset

DT = 4e-3  # the training timestep (s): coarse bins train fast; norse cells carry it, the export records it
TARGET_DT = 2e-3  # the edge sensor's finer bins: retime the trained model to them (rho = 1/2)


def build_model(n_in=40, n_hidden=64, n_out=10, dt=DT):
    """A per-step model: ``out, state = model(x_t, state)`` (the contract of docs/api.md)."""
    return nt.SequentialState(
        torch.nn.Linear(n_in, n_hidden, bias=False),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0)), dt=dt),
        torch.nn.Linear(n_hidden, n_out, bias=False),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0)), dt=dt),
    )


def run_layerwise(model, x):
    """(output spikes, output membrane) over x [batch, T, 40]: each Linear on all steps at once,
    then each cell over time (valid for a feed-forward model; a deployment calls it per step)."""
    h, v = x, None
    for module, stateful in zip(model, model.stateful_layers):
        if not stateful:
            h = module(h)
            continue
        state, outs, vs = None, [], []
        for t in range(h.shape[1]):
            o, state = module(h[:, t], state)
            outs.append(o)
            vs.append(state.v)
        h, v = torch.stack(outs, 1), torch.stack(vs, 1)
    return h, v


def train(model, seconds: float, seed: int = 0):
    """Surrogate-gradient training on the default task for about ``seconds``.

    The class is the output neuron with most spikes (readout ``sum``); the loss adds each output
    neuron's peak membrane potential to its spike count, so that it has a gradient before the
    output layer spikes at all."""
    torch.manual_seed(seed)
    ds = open_dataset("default:train")
    x = torch.from_numpy(ds.bin(DT))  # [N, T, 40] event counts per bin, from the raw event times
    y = torch.from_numpy(np.asarray(ds.labels)).long()
    with torch.no_grad():  # initial drive of a few input spikes per threshold
        model[0].weight.normal_(0, 2.0)
        model[2].weight.normal_(0, 4.0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx = torch.randint(len(y), (128,))
        spikes, v = run_layerwise(model, x[idx])
        loss = torch.nn.functional.cross_entropy(spikes.sum(1) + v.max(1).values, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def main(out: str = "tutorial_out", seconds: float = 60.0, lava_samples: int = 8, test_samples: int = 200) -> dict:
    os.makedirs(out, exist_ok=True)
    model = train(build_model(), seconds)

    # 1. export the in-memory model; the graph carries dt, scheme and readout in its metadata
    graph = api.export(model, input_shape=(40,), readout="sum", output=os.path.join(out, "model.nir"))

    # 2. retime it zero-shot for the sensor's 2 ms bins (rho = 1/2) with the integral method
    retimed = api.retime(graph, TARGET_DT, "integral", output=os.path.join(out, "model_2ms.nir"))

    # 3. lower both and bin the test data at each timestep (from the raw event times)
    _, prog = api.lower(graph)
    _, prog2 = api.lower(retimed)
    inputs = api.load_inputs(prog, data="default", samples=test_samples)
    inputs2 = api.load_inputs(prog2, data="default", samples=test_samples)

    # 4. simulate on the reference (float64) and compare with Lava's floating-point simulator
    ref = api.simulate(prog, inputs["x"], "reference")
    rec = api.run_record(ref, prog, labels=inputs["labels"], inputs=inputs["x"], model="model.nir")
    write_json(rec, os.path.join(out, "run_reference.json"))
    rec2 = api.run_record(api.simulate(prog2, inputs2["x"], "reference"), prog2, labels=inputs2["labels"])
    # the reference method (keep the time constants, new dt) for comparison
    _, prog_tau = api.lower(graph, dt=TARGET_DT, method="tau")
    rec_tau = api.run_record(api.simulate(prog_tau, inputs2["x"], "reference"), prog_tau, labels=inputs2["labels"])
    cmp, _ = api.compare(prog, inputs["x"][:lava_samples], inputs["labels"][:lava_samples],
                         backends=("reference", "lava-float"))  # fmt: skip

    # 5. deploy for Loihi: fixed point, calibrated on training data, as a lava-dl netx file
    fx, desc = api.deploy(graph, os.path.join(out, "model.net"), calib_inputs=inputs["x"][:32])

    # 6. a report of the reference run (HTML and Markdown with plots)
    report = api.report(os.path.join(out, "run_reference.json"), os.path.join(out, "report.html"))
    summary = {
        "accuracy_4ms_trained": rec["accuracy"],
        "accuracy_2ms_integral": rec2["accuracy"],
        "accuracy_2ms_tau": rec_tau["accuracy"],
        "spikes_per_sample": rec["total_spikes_per_sample"],
        "lava_float_spike_agreement": cmp["spike_agreement"],
        "netx_layers": [layer["type"] for layer in desc["layers"]],
        "report": report["paths"],
    }
    write_json(summary, os.path.join(out, "tutorial_summary.json"))
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tutorial_out")
    ap.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    args = ap.parse_args()
    for k, v in main(args.out, args.seconds).items():
        print(f"{k}: {v}")
