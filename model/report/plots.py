"""The report's plots (matplotlib, Agg), written as PNG files beside the Markdown page.

Each function takes the collected report dict and a path, and returns the path written or
``None`` when there is nothing to plot (the page then marks the plot MISSING).
"""

import json
import re

from ..energy import DESIGNS
from .collect import DOCS

__all__ = ["docs_accuracy_points", "plot_accuracy", "plot_cycles", "plot_energy_breakdown"]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(plt, fig, path, rect=(0, 0, 1, 1)):
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _action_kind(action):
    """An action without its widths: ``"12-bit add/sub"`` -> ``"add/sub"``."""
    return re.sub(r"\d+-bit |\s*\(\d+ b\)", "", action)


def plot_energy_breakdown(report, path):
    """Left: each design's energy stacked by action; right: ternac's by layer and action."""
    designs = report["energy"]["designs"]
    if not designs:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    kinds = list(dict.fromkeys(_action_kind(a["action"]) for d in DESIGNS for a in designs[d]["actions"]))
    colors = {kind: plt.cm.tab20((2 * i) % 20 + (2 * i) // 20) for i, kind in enumerate(kinds)}
    for ax, groups, title in (
            (left, {d: designs[d]["actions"] for d in DESIGNS}, "per design"),
            (right, _by_layer(designs["ternac"]["actions"]), "ternac, per layer")):
        base = [0.0] * len(groups)
        for kind in kinds:
            values = [sum(a["pj"] for a in actions if _action_kind(a["action"]) == kind) / 1e3
                      for actions in groups.values()]
            if any(values):
                ax.barh(list(groups), values, left=base, color=colors[kind], label=kind)
                base = [b + v for b, v in zip(base, values)]
        for i, total in enumerate(base):
            ax.text(total, i, f" {total:.3g} nJ", va="center", fontsize=8)
        ax.set_xlim(0, max(base) * 1.25)
        ax.invert_yaxis()
        ax.set_xlabel("nJ per inference (45 nm)")
        ax.set_title(f"energy by action, {title}", fontsize=10)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    return _save(plt, fig, path, rect=(0, 0.16, 1, 1))


def _by_layer(actions):
    layers = {}
    for action in actions:
        layers.setdefault(action["component"], []).append(action)
    return layers


def docs_accuracy_points(path=DOCS / "accuracy.json"):
    """``(table, format, all-in bits/weight, integer accuracy, dataset)`` of the accuracy table.

    The oneshot-retrained row of every format of every table in ``docs/accuracy.json``
    (``ternac accuracy``); empty if the file is missing or of another format.
    """
    try:
        data = json.loads(path.read_text())
        points = []
        for table, content in data["tables"].items():
            for row in content["rows"]:
                run = row["runs"].get("oneshot")
                if run:
                    points.append((table, row["format"], run["bits_per_weight_all_in"],
                                   run["integer_accuracy"], data["dataset"]))
        return points
    except (OSError, ValueError, KeyError, TypeError):
        return []


def plot_accuracy(report, path):
    """Accuracy against all-in bits per weight: the docs' table and this network."""
    ours = [row for row in report["accuracy"]["rows"] if row.get("accuracy") is not None
            and row["model"].startswith(("integer", "RTL"))]
    points = docs_accuracy_points()
    if not ours and not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    tables = {}
    for table, _, bpw, acc, dataset in points:
        tables.setdefault(f"{table} ({dataset})", []).append((bpw, 100 * acc))
    for i, (table, pts) in enumerate(tables.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="os^D"[i % 4], alpha=0.6,
                   label=f"docs/accuracy.json {table}")
    x = report["network"]["bits_per_weight"]["all_in"]
    for row in ours:
        ax.scatter([x], [100 * row["accuracy"]], marker="*", s=180, zorder=3,
                   label=f"this network: {row['model']} ({row['dataset']}, {row['samples']} samples)")
    floats = [row for row in report["accuracy"]["rows"] if row["model"].startswith("float")
              and row.get("accuracy") is not None]
    for row in floats:
        ax.axhline(100 * row["accuracy"], color="k", linestyle="--", linewidth=0.8,
                   label=f"this network: float ({row['dataset']})")
    if not ours:
        ax.axvline(x, color="k", linestyle=":", label="this network's bits/weight (accuracy MISSING)")
    ax.set_xlabel("bits per weight, all-in (codes + per-channel parameters + tables)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(plt, fig, path)


def plot_cycles(report, path):
    """Predicted cycles per phase (input, each pass, output) with each pass's utilization."""
    cycles = report["program"]["cycles"]
    if not cycles:
        return None
    plt = _pyplot()
    names = ["input", *cycles["layer_names"], "output"]
    values = [cycles["input"], *cycles["layers"], cycles["output"]]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = ax.bar(names, values, color=["#999"] + ["#3a7"] * len(cycles["layers"]) + ["#999"])
    for bar, util in zip(bars[1:-1], cycles["layer_utilization"]):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{util:.0%} util.",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("cycles per inference")
    ax.set_title(f"{cycles['total']} cycles per inference, {cycles['utilization']:.1%} utilization",
                 fontsize=10)
    ax.margins(y=0.15)
    return _save(plt, fig, path)
