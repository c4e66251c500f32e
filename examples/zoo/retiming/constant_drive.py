"""Constant drive: retimed neurons against the continuous-time neuron, at dt from 0.1 ms to 4 ms.

A LIF driven by a bias (an Affine bias every step) or by the same current as input counts, and
a CubaLIF driven by a constant input
current (a constant rate of input counts, re-binned at each dt: count per bin = rate x dt) are
built at dt_S = 1 ms with the ``exact`` scheme and ``current`` convention, retimed to each dt by
every method, and simulated for 1 s on the reference simulator. The truth is the continuous-time
neuron observed at bin ends: its state is propagated over each bin in closed form (no matrix
exponential), a spike is emitted at the first bin end where v exceeds the threshold, and v is
reset there, so each interspike interval is the first multiple of dt at which the exact voltage
exceeds the threshold.

    python -m examples.zoo.retiming.constant_drive          # prints the table for docs/retiming.md
"""

from __future__ import annotations

import math
from typing import Dict, List

import nir
import numpy as np

from simulators.reference import simulate
from toolchain.ir import Discretization, discretization_of, make_graph
from toolchain.program import lower
from toolchain.passes.retime import retime

DT_S = 1e-3
DTS = [1e-4, 2e-4, 2.5e-4, 5e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 4e-3]
METHODS = ("integral", "exact", "euler", "tau", "none")
DURATION = 1.0

# LIF: tau 20 ms, threshold 1, bias current 1.6 (v_inf = 1.6): ISI ~ 19 ms
LIF = dict(tau=0.02, r=1.0, v_th=1.0, bias=1.6)
# CubaLIF: tau_syn 5 ms, tau_mem 10 ms, w_in 1, r 1, threshold 1, input current 1.5
CUBA = dict(tau_syn=0.005, tau_mem=0.01, r=1.0, w_in=1.0, v_th=1.0, current=1.5)


def lif_graph(bias: bool = True) -> nir.NIRGraph:
    """Driven by a bias (Affine bias every step) or, with bias=False, by its input counts."""
    p = LIF
    one = lambda v: np.array([v], dtype=np.float64)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1])}),
        "fc": nir.Affine(weight=np.ones((1, 1)) * (0 if bias else 1), bias=one(p["bias"] if bias else 0)),
        "lif": nir.LIF(tau=one(p["tau"]), r=one(p["r"]), v_leak=one(0), v_threshold=one(p["v_th"]), v_reset=one(0)),
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    meta = Discretization(dt=DT_S, scheme="exact", input_convention="current").to_metadata()
    return make_graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], meta)


def cuba_graph() -> nir.NIRGraph:
    p = CUBA
    one = lambda v: np.array([v], dtype=np.float64)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1])}),
        "lif": nir.CubaLIF(
            tau_syn=one(p["tau_syn"]), tau_mem=one(p["tau_mem"]), r=one(p["r"]), v_leak=one(0),
            v_threshold=one(p["v_th"]), v_reset=one(0), w_in=one(p["w_in"]),
        ),
        "output": nir.Output(output_type={"output": np.array([1])}),
    }
    meta = Discretization(dt=DT_S, scheme="exact", input_convention="current").to_metadata()
    return make_graph(nodes, [("input", "lif"), ("lif", "output")], meta)


# --------------------------------------------------------------------------- continuous-time truth
def truth_lif(dt: float) -> int:
    """Spikes in 1 s of the continuous LIF observed at bin ends (closed form)."""
    p = LIF
    v_inf = p["r"] * p["bias"]
    k = 1
    while v_inf * (1 - math.exp(-k * dt / p["tau"])) <= p["v_th"]:
        k += 1
    return int(round(DURATION / dt)) // k


def truth_cuba(dt: float) -> int:
    """Spikes in 1 s of the continuous CubaLIF under a constant current, observed at bin ends."""
    p = CUBA
    ts, tm, r = p["tau_syn"], p["tau_mem"], p["r"]
    i_inf = p["w_in"] * p["current"]
    es, em = math.exp(-dt / ts), math.exp(-dt / tm)
    i = v = 0.0
    n = 0
    for _ in range(int(round(DURATION / dt))):
        d = i - i_inf
        K = r * d * ts / (ts - tm)
        v = r * i_inf + K * es + (v - r * i_inf - K) * em
        i = i_inf + d * es
        if v > p["v_th"]:
            n += 1
            v = 0.0
    return n


# --------------------------------------------------------------------------- simulation
def simulated(graph, dt: float, method: str, drive: str) -> int:
    g = retime(graph, dt, method)
    program = lower(g, discretization_of(g))
    T = int(round(DURATION / dt))
    if drive == "bias":
        x = np.zeros((1, T, 1))
    elif drive == "lif-input":  # the bias current delivered as input counts at a constant rate
        x = np.full((1, T, 1), LIF["bias"] * dt / DT_S)
    else:  # constant current: counts at a constant rate, summed per bin (current x dt_S per dt_S)
        x = np.full((1, T, 1), CUBA["current"] * dt / DT_S)
    res = simulate(program, x)
    return int(res.spikes["lif"].sum())


def table() -> List[Dict]:
    rows = []
    for neuron, graph, truth, drive in (
        ("LIF (bias)", lif_graph(), truth_lif, "bias"),
        ("LIF (constant input rate)", lif_graph(bias=False), truth_lif, "lif-input"),
        ("CubaLIF (constant current)", cuba_graph(), truth_cuba, "input"),
    ):
        for dt in DTS:
            row = {"neuron": neuron, "dt": dt, "truth": truth(dt)}
            for m in METHODS:
                try:
                    row[m] = simulated(graph, dt, m, drive)
                except Exception as e:  # euler refuses unstable retimings
                    row[m] = f"refused ({type(e).__name__})"
            rows.append(row)
    return rows


def main() -> None:
    rows = table()
    head = "| neuron | dt (ms) | continuous | " + " | ".join(METHODS) + " |"
    print(head)
    print("|" + "---|" * (3 + len(METHODS)))
    for r in rows:
        cells = [str(r[m]) for m in METHODS]
        print(f"| {r['neuron']} | {r['dt'] * 1e3:g} | {r['truth']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
