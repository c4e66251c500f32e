"""Plot conventions shared by every figure of the reports and the sweep directory.

* one colour per retiming method in every plot (:data:`METHOD_COLORS`);
* timestep axes are log-scaled with a labelled tick at every swept dt (no minor tick labels that
  overlap) and a dotted mark at the trained dt (:func:`dt_axis`);
* energy: the total per method, and its dynamic part only where it is visible (not a line stuck
  at zero) (:func:`energy_lines`).
"""

from __future__ import annotations

import io
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

#: colour of each retiming method, the same in every figure
METHOD_COLORS = {"none": "#7f7f7f", "tau": "#1f77b4", "integral": "#ff7f0e", "euler": "#2ca02c", "exact": "#d62728"}
_EXTRA = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def color_of(method: str) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA[sum(map(ord, method)) % len(_EXTRA)]


def method_order(methods: Iterable[str]) -> List[str]:
    """Methods in a fixed order (the colour table's), unknown ones after, by name."""
    ms = list(dict.fromkeys(methods))
    known = [m for m in METHOD_COLORS if m in ms]
    return known + sorted(m for m in ms if m not in METHOD_COLORS)


def fmt_ms(v: float) -> str:
    """A timestep in ms for a tick label: 0.25, 0.5, 1, 2, 4, 0.125."""
    return f"{v:.4g}"


def dt_axis(ax, dts_ms: Sequence[float], trained_ms: Optional[float] = None, label: str = "timestep dt (ms)") -> None:
    """Log-scaled x axis with a labelled tick at every swept dt and a mark at the trained dt."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = sorted({float(d) for d in dts_ms if d and d > 0})
    ax.set_xscale("log")
    if ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels([fmt_ms(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        lo, hi = ticks[0], ticks[-1]
        pad = (hi / lo) ** 0.06 if hi > lo else 1.25
        ax.set_xlim(lo / pad, hi * pad)
    if trained_ms:
        ax.axvline(trained_ms, color="#444444", ls=":", lw=1.2, label=f"trained dt ({fmt_ms(trained_ms)} ms)")
    ax.set_xlabel(label)
    ax.grid(alpha=0.3, which="major")


def series(rows: Sequence[dict], method: str, fn) -> List[Tuple[float, float]]:
    """(dt in ms, value) of one method's rows, sorted by dt, values that exist."""
    pts = sorted((float(r["dt"]) * 1e3, fn(r)) for r in rows if str(r.get("method")) == method)
    return [(x, float(y)) for x, y in pts if y is not None]


def method_lines(ax, rows: Sequence[dict], fn, linestyle: str = "-", marker: str = "o", label_suffix: str = "") -> int:
    """One line per method (its colour); returns the number of lines drawn."""
    n = 0
    for m in method_order(str(r.get("method")) for r in rows):
        pts = series(rows, m, fn)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls=linestyle, color=color_of(m),
                    label=f"{m}{label_suffix}" if label_suffix is not None else None)  # fmt: skip
            n += 1
    return n


def energy_lines(ax, rows: Sequence[dict], total_fn, dynamic_fn) -> int:
    """Total energy per method (solid); its dynamic part (dashed, same colour) only where it is
    more than 1 % of the largest total, so that no legend entry is a line stuck at zero."""
    n = method_lines(ax, rows, total_fn)
    totals = [y for m in method_order(str(r.get("method")) for r in rows) for _, y in series(rows, m, total_fn)]
    dyn = [y for m in method_order(str(r.get("method")) for r in rows) for _, y in series(rows, m, dynamic_fn)]
    if totals and dyn and max(dyn) > 0.01 * max(totals) and any(abs(a - b) > 1e-12 for a, b in zip(totals, dyn)):
        for m in method_order(str(r.get("method")) for r in rows):
            pts = series(rows, m, dynamic_fn)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="--", marker="x", color=color_of(m), alpha=0.8)
        from matplotlib.lines import Line2D

        handles, labels = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="black", ls="--", marker="x"))
        labels.append("dashed: dynamic part")
        ax.legend(handles, labels, fontsize=8)
    return n


def png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt().close(fig)
    return buf.getvalue()


def sweep_figures(sweep: dict, energy_of=None, dynamic_of=None) -> Dict[str, bytes]:
    """The sweep's figures: metric, spikes and (with ``energy_of``) energy against the timestep."""
    pyplot = plt()
    metric = sweep.get("metric", "accuracy")
    rows = [r for r in sweep["rows"] if r.get("dt") is not None]
    dts = [float(r["dt"]) * 1e3 for r in rows]
    trained = float(sweep["source_dt"]) * 1e3 if sweep.get("source_dt") else None
    specs = [
        ("sweep_accuracy", lambda r: r.get(metric), metric.replace("_", " ")),
        ("sweep_spikes", lambda r: r.get("spikes_per_sample"), "spikes per inference"),
    ]
    if energy_of is not None:
        specs.append(("sweep_energy", energy_of, "energy per inference (uJ)"))
    figs = {}
    for key, fn, ylabel in specs:
        fig, ax = pyplot.subplots(figsize=(6.4, 3.8))
        dt_axis(ax, dts, trained)
        if key == "sweep_energy" and dynamic_of is not None:
            n = energy_lines(ax, rows, fn, dynamic_of)
        else:
            n = method_lines(ax, rows, fn)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs timestep" + (f" ({sweep['backend']})" if sweep.get("backend") else ""))
        if not n:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif not ax.get_legend():
            ax.legend(fontsize=8)
        fig.tight_layout()
        figs[key] = png(fig)
    return figs
