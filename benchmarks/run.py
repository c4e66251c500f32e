"""``make bench``: Lava fixed point vs the emulator on the demo network, in one run.

Measures, on the same quantized network (``toolchain/loihi/quantize.py``, netx profile) and the same
samples of the demo test split:

* Lava (``Loihi2SimCfg(select_tag="fixed_pt")``, ``simulators/lava_fixed.py``): start-up cost
  (quantize, plan, build the processes, compile, start the runtime) and steady-state samples and
  time steps per second, from the time stamps of chunks of five samples (one RunSteps call each);
* the emulator (``simulators/emulator.py``) on those samples (its spikes must equal Lava's, bit for
  bit), on the whole test split and on the split repeated ``--repeat`` times (best of three);
* the ratio of the two throughputs;
* the emulator's synaptic operations per second (events x fan-out: what it computes) and the
  dense-equivalent multiply-accumulates per second, next to this machine's measured float32
  matrix-multiply throughput (torch, all cores).

Writes ``benchmarks/results.json`` (``--out``) and prints the tables as Markdown.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Dict

import numpy as np


def matmul_peak(seconds: float = 2.0, n: int = 2048) -> Dict[str, float]:
    """Float32 GEMM throughput (multiply-accumulates per second) with torch on all cores."""
    import torch

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    t = time.perf_counter() - t0
    return {"size": n, "mac_per_s": reps * n**3 / t, "gflops": 2 * reps * n**3 / t / 1e9}


def synaptic_ops(fx, x: np.ndarray, spikes: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Per run: events x fan-out the emulator adds up, and the dense-equivalent MACs."""
    from simulators.emulator import Schedule

    sched = Schedule(fx)
    N, T = x.shape[0], x.shape[1]
    events = dense = 0.0
    for k, conns in sched.into.items():
        for c in conns:
            n_dst = fx.groups[c.c.dst].n
            if c.is_input:
                nz = float(np.count_nonzero(x))
                n_src = x.shape[2]
            else:
                nz = float(spikes[c.src].sum())
                n_src = fx.groups[c.src].n
            if c.kind == "dense":
                events += nz * n_dst
                dense += N * T * n_src * n_dst
            else:
                k_size = c.W[0].size  # kernel entries per output channel
                events += nz * c.W.shape[0] * c.W.shape[1] * c.W.shape[2]
                dense += N * T * n_dst * k_size
    return {"events_x_fanout": events, "dense_macs": dense}


def run(lava_samples: int = 40, repeat: int = 20, out: str = "benchmarks/results.json") -> Dict[str, Any]:
    from benchmarks import demo_setup, machine
    from simulators.emulator import emulate, run_emulator
    from toolchain.loihi.plan import check_integer_inputs
    from simulators.lava_fixed import run_lava_fixed
    from toolchain.loihi.quantize import quantize

    program, x, labels, info = demo_setup()
    N_all, T = x.shape[0], x.shape[1]
    n_neurons = sum(op.ssm.n for op in program.neurons())
    t0 = time.perf_counter()
    fx = quantize(program)
    t_quant = time.perf_counter() - t0
    xl = x[:lava_samples]
    print(f"demo network: {info['model']}; data: {info['data']}; {N_all} samples x {T} steps; lava on {len(xl)}")

    # --- Lava, one-sample chunks: start-up and steady state from the chunk time stamps
    stamps = []
    t0 = time.perf_counter()
    lava = run_lava_fixed(program, xl, progress=False, quant=fx, chunk=5 * T,
                          on_chunk=lambda done, total: stamps.append((time.perf_counter(), done)))  # fmt: skip
    t_lava = time.perf_counter() - t0
    (ta, da), (tb, db) = stamps[0], stamps[-1]
    steady = (db - da) / (tb - ta)  # Lava steps per second once running
    startup = t_lava - lava.info["lava_depth"] / steady - len(xl) * T / steady
    lava_res = {
        "samples": len(xl),
        "steps_per_sample": T,
        "total_lava_steps": lava.info["total_steps"],
        "seconds_total": t_lava,
        "startup_seconds": startup,
        "build_seconds": lava.info["build_seconds"],
        "steady_steps_per_s": steady,
        "steady_samples_per_s": steady / T,
        "samples_per_s_including_startup": len(xl) / t_lava,
        "processes": lava.info["lava_processes"],
    }

    # --- emulator on the same samples (bit-exact check), then on the whole split and on 4x the split
    xi_all = check_integer_inputs(program, x)
    emulate(fx, xi_all[:2])  # numba's compiled kernels are cached on disk; this loads them
    t0 = time.perf_counter()
    emu_l = run_emulator(program, xl, quant=fx)
    t_emu_l = time.perf_counter() - t0
    mism = sum(int((emu_l.spikes[k] != lava.spikes[k]).sum()) for k in lava.spikes)
    agree = float(np.mean([np.mean(emu_l.spikes[k] == lava.spikes[k]) for k in lava.spikes]))

    def best_of(xi, reps=3):
        best, res = np.inf, None
        for _ in range(reps):
            t = time.perf_counter()
            res = emulate(fx, xi, batch_size=1024)
            best = min(best, time.perf_counter() - t)
        return best, res

    t_all, out_all = best_of(xi_all)
    xi_rep = np.concatenate([xi_all] * repeat)
    t_rep, _ = best_of(xi_rep, reps=3)
    emu_res = {
        "same_samples": {"samples": len(xl), "seconds": t_emu_l, "steps_per_s": len(xl) * T / t_emu_l,
                         "spike_mismatches_vs_lava": mism, "spike_agreement": agree},  # fmt: skip
        "test_split": {"samples": N_all, "seconds": t_all, "samples_per_s": N_all / t_all, "steps_per_s": N_all * T / t_all},
        f"test_split_x{repeat}": {"samples": N_all * repeat, "seconds": t_rep, "samples_per_s": N_all * repeat / t_rep,
                                   "steps_per_s": N_all * repeat * T / t_rep},  # fmt: skip
        "quantize_seconds": t_quant,
    }
    best_rate = max(emu_res["test_split"]["steps_per_s"], emu_res[f"test_split_x{repeat}"]["steps_per_s"])

    # --- synaptic operations against the machine's matrix-multiply throughput
    ops = synaptic_ops(fx, xi_all, out_all["spikes"])
    peak = matmul_peak()
    syn = {
        "events_x_fanout_per_sample": ops["events_x_fanout"] / N_all,
        "dense_macs_per_sample": ops["dense_macs"] / N_all,
        "synaptic_ops_per_s": ops["events_x_fanout"] / t_all,
        "dense_equivalent_macs_per_s": ops["dense_macs"] / t_all,
        "neuron_updates_per_s": N_all * T * n_neurons / t_all,
        "machine_sgemm_macs_per_s": peak["mac_per_s"],
        "machine_sgemm_gflops": peak["gflops"],
    }
    syn["synaptic_ops_fraction_of_sgemm"] = syn["synaptic_ops_per_s"] / peak["mac_per_s"]
    syn["dense_equivalent_fraction_of_sgemm"] = syn["dense_equivalent_macs_per_s"] / peak["mac_per_s"]
    result = {
        "network": {"model": info["model"], "data": info["data"], "dt": info["dt"], "steps_per_sample": T,
                    "neurons": n_neurons, "layers": [[op.name, op.type, op.ssm.n] for op in program.neurons()]},  # fmt: skip
        "lava_fixed_pt": lava_res,
        "emulator": emu_res,
        "ratio_emulator_over_lava_steady": best_rate / steady,
        "ratio_same_samples_including_lava_startup": (len(xl) * T / t_emu_l) / (len(xl) * T / t_lava),
        "synaptic": syn,
        "machine": machine(),  # last: the load average covers the run
    }
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    print(markdown(result))
    if out:
        print(f"wrote {out}")
    return result


def markdown(r: Dict[str, Any]) -> str:
    L, E, S, M = r["lava_fixed_pt"], r["emulator"], r["synaptic"], r["machine"]
    rep = next(k for k in E if k.startswith("test_split_x"))
    v = M.get("versions", {})
    lines = [
        f"Machine: {M.get('Model name', '?')}, {M.get('cores')} cores ({M.get('Core(s) per socket', '?')} per socket, "
        f"{M.get('Thread(s) per core', '?')} thread per core{', ' + M['Hypervisor vendor'] + ' VM' if M.get('Hypervisor vendor') else ''}), "
        f"{M.get('ram_gb')} GB RAM, L2 {M.get('L2 cache', '?')}, L3 {M.get('L3 cache', '?')}; "
        f"load average at the end of the run {M.get('load_average_1_5_15_min')} (1, 5, 15 min); "
        f"lava-nc {v.get('lava-nc')}, lava-dl {v.get('lava-dl')}, torch {v.get('torch')}, numba {v.get('numba')} "
        f"({M.get('numba_threads')} threads, {M.get('numba_threading_layer')}).",
        f"Network: {r['network']['model']}, {r['network']['neurons']} neurons, {r['network']['steps_per_sample']} steps per sample.",
        "",
        "| | samples | samples/s | time steps/s | notes |",
        "|---|---:|---:|---:|---|",
        f"| Lava fixed_pt (steady state) | {L['samples']} | {L['steady_samples_per_s']:.2f} | {L['steady_steps_per_s']:.0f} | "
        f"start-up {L['startup_seconds']:.1f} s, {L['processes']} Lava processes |",
        f"| Lava fixed_pt (incl. start-up) | {L['samples']} | {L['samples_per_s_including_startup']:.2f} | "
        f"{L['samples'] * L['steps_per_sample'] / L['seconds_total']:.0f} | {L['seconds_total']:.1f} s in all |",
        f"| emulator, same samples | {E['same_samples']['samples']} | "
        f"{E['same_samples']['samples'] / E['same_samples']['seconds']:.0f} | {E['same_samples']['steps_per_s']:.3g} | "
        f"{E['same_samples']['spike_mismatches_vs_lava']} spikes differ from Lava |",
        f"| emulator, test split | {E['test_split']['samples']} | {E['test_split']['samples_per_s']:.0f} | "
        f"{E['test_split']['steps_per_s']:.3g} | |",
        f"| emulator, {rep.split('_x')[1]}x test split | {E[rep]['samples']} | {E[rep]['samples_per_s']:.0f} | "
        f"{E[rep]['steps_per_s']:.3g} | |",
        "",
        f"Emulator / Lava steady-state throughput: **{r['ratio_emulator_over_lava_steady']:.0f}x** "
        f"(same {L['samples']} samples, Lava's start-up included: {r['ratio_same_samples_including_lava_startup']:.0f}x).",
        "",
        "| emulator | per second | fraction of float32 GEMM |",
        "|---|---:|---:|",
        f"| synaptic operations (events x fan-out) | {S['synaptic_ops_per_s']:.3g} | {S['synaptic_ops_fraction_of_sgemm']:.1%} |",
        f"| dense-equivalent multiply-accumulates | {S['dense_equivalent_macs_per_s']:.3g} | "
        f"{S['dense_equivalent_fraction_of_sgemm']:.1%} |",
        f"| neuron updates | {S['neuron_updates_per_s']:.3g} | |",
        f"| machine: torch float32 GEMM (MAC/s) | {S['machine_sgemm_macs_per_s']:.3g} | 100% |",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lava-samples", type=int, default=40, help="samples to run on Lava (default 40)")
    ap.add_argument("--repeat", type=int, default=20, help="the emulator also runs the test split repeated this often")
    ap.add_argument("--out", default="benchmarks/results.json")
    args = ap.parse_args(argv)
    run(args.lava_samples, args.repeat, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
