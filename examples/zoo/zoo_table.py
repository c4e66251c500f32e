"""Write the model-zoo table of docs/zoo.md from the families' ``results.json``.

    python -m examples.zoo.zoo_table            # prints the tables and rewrites the block in docs/zoo.md

Each ``examples/zoo/<family>/results.json`` is written by ``python -m examples.zoo.<family>.evaluate``
(examples/zoo/deploy.py). The text between the markers ``<!-- zoo-table -->`` and
``<!-- /zoo-table -->`` in docs/zoo.md is replaced; the rest of the page is left alone. A family
without results is listed as "not evaluated" rather than left out.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FAMILIES = ("resnet", "segmentation", "transfer", "audio")
BEGIN, END = "<!-- zoo-table -->", "<!-- /zoo-table -->"


def _load(family: str) -> Optional[Dict[str, Any]]:
    p = os.path.join(HERE, family, "results.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def _m(v: Optional[float], metric: str) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f} %" if metric == "accuracy" else f"{v:.3f}"


def _sub(v: Optional[float], n: Optional[int], ref: Optional[float], metric: str) -> str:
    """A metric on a subset, with the reference's value on the same samples to compare against."""
    s = _m(v, metric)
    if n is not None:
        s += f" (n={n}"
        if ref is not None:
            s += f"; ref. {_m(ref, metric)}"
        s += ")"
    return s


def main_table(results: Dict[str, Optional[Dict[str, Any]]]) -> str:
    head = ("| family | metric | dt | torch | reference | Lava float | fixed point | spike agreement ref. vs Lava | "
            "neurons | spikes / inference | energy / inference |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for fam in FAMILIES:
        r = results.get(fam)
        if r is None:
            lines.append(f"| {fam} | not evaluated (no examples/zoo/{fam}/results.json) |" + " |" * 9)
            continue
        met = r["metric"]
        lf = r.get("lava_float") or {}
        fx = r.get("fixed_point") or r.get("emulator") or {}
        sa = r.get("spike_agreement_reference_vs_lava_float") or {}
        en = (r.get("energy_per_inference_j") or {})
        energy = "n/a" if en.get("total_j") is None else f"{en['total_j'] * 1e6:.1f} uJ ({en.get('model')})"
        fixed = _sub(fx.get(met), fx.get("n_samples"), fx.get(f"reference_{met}_same_samples"), met)
        fixed += f", {fx.get('backend', 'emulator')}"
        lfe = fx.get("lava_fixed_vs_emulator")
        if lfe:
            fixed += (f"; Lava fixed_pt vs emulator: {lfe['samples_with_identical_spikes']}/{lfe['n_samples']} samples "
                      f"bit-identical")
        agree = (f"{sa.get('spike_agreement', float('nan')):.6f}, {sa.get('samples_with_identical_spikes')}/"
                 f"{sa.get('n_samples')} samples identical")
        lines.append(
            f"| {fam} | {met.replace('_', ' ')} | {r['dt'] * 1e3:g} ms | {_m((r.get('torch') or {}).get(met), met)} | "
            f"{_m((r.get('reference') or {}).get(met), met)} (n={(r.get('reference') or {}).get('n_samples')}) | "
            f"{_sub(lf.get(met), lf.get('n_samples'), lf.get(f'reference_{met}_same_samples'), met)} | {fixed} | "
            f"{agree} | {r.get('neurons', 'n/a')} | {r['spikes_per_sample']:.0f} | {energy} |"
        )
    return "\n".join(lines) + "\n"


def sweep_tables(results: Dict[str, Optional[Dict[str, Any]]]) -> str:
    out: List[str] = []
    for fam in FAMILIES:
        r = results.get(fam)
        sw = (r or {}).get("sweep")
        if not sw:
            continue
        met = r["metric"]
        methods = sw["methods"]
        cell = {(x["dt"], x["method"]): x for x in sw["rows"]}
        dts = sorted({x["dt"] for x in sw["rows"]})
        out.append(f"**{fam}** (trained at {sw['source_dt'] * 1e3:g} ms; {sw['backend']} backend, "
                   f"{sw['n_samples']} test samples; {met.replace('_', ' ')}, spikes per inference in brackets)\n")
        out.append("| target dt | rho | " + " | ".join(methods) + " |")
        out.append("|---|---|" + "---|" * len(methods))
        for dt in dts:
            vals, rho = [], None
            for m in methods:
                x = cell.get((dt, m))
                if x is None:
                    vals.append("")
                    continue
                rho = x.get("rho", rho)
                if x.get(met) is None:
                    vals.append("refused" if x.get("error") else "n/a")
                else:
                    vals.append(f"{_m(x[met], met)} ({x['spikes_per_sample']:.0f})")
            out.append(f"| {dt * 1e3:g} ms | {rho:g} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def render(results: Dict[str, Optional[Dict[str, Any]]]) -> str:
    return (BEGIN + "\n" + main_table(results) + "\n### Timestep sweeps (zero-shot retiming)\n\n" + sweep_tables(results)
            + END)


def main() -> int:
    results = {f: _load(f) for f in FAMILIES}
    block = render(results)
    doc = os.path.join(REPO, "docs", "zoo.md")
    with open(doc) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no {BEGIN} ... {END} block to replace")
    a, b = text.index(BEGIN), text.index(END) + len(END)
    with open(doc, "w") as f:
        f.write(text[:a] + block + text[b:])
    print(block)
    print(f"wrote {os.path.relpath(doc, REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
