"""The result of a search: Pareto front, comparison with the uniform baseline, JSON record,
plot, and the ``.tern`` files of chosen front points."""

from pathlib import Path

from .evaluate import network_from_bytes
from .objectives import MINIMISED

__all__ = ["compare_with_baseline", "dominates", "materialize", "pareto_front", "plot_front", "record"]


def dominates(a, b, keys=MINIMISED):
    """True when record ``a`` is no worse than ``b`` in every objective and better in one."""
    return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)


def record(entry):
    """The JSON record of one evaluated trial."""
    point = entry["point"]
    return {"trial": entry["trial"], "label": point.label(), **point.to_dict(),
            **entry["objectives"], "predicted_accuracy": entry["predicted_accuracy"],
            "train_seconds": entry["train_seconds"]}


def pareto_front(study, records):
    """The records of Optuna's Pareto-optimal trials (``study.best_trials``), one per point."""
    best = {t.number for t in study.best_trials}
    front, seen = [], set()
    for rec in records:
        key = (tuple(rec["codings"]), tuple(rec["widths"]), rec["lanes"])
        if rec["trial"] in best and key not in seen:
            seen.add(key)
            front.append(rec)
    return sorted(front, key=lambda r: (r["code_bits"], -r["integer_accuracy"]))


def compare_with_baseline(front, baseline):
    """Other front points against the uniform baseline: the best accuracy at no more code bits,
    and the fewest code bits at no less accuracy (None when the front has no such point). The
    baseline's own network (at any P) is left out."""
    others = [r for r in front if (r["codings"], r["widths"]) != (baseline["codings"], baseline["widths"])]
    cheaper = [r for r in others if r["code_bits"] <= baseline["code_bits"]]
    better = [r for r in others if r["integer_accuracy"] >= baseline["integer_accuracy"]]
    at_bits = max(cheaper, key=lambda r: r["integer_accuracy"], default=None)
    at_accuracy = min(better, key=lambda r: r["code_bits"], default=None)
    return {
        "baseline": {k: baseline[k] for k in ("label", "integer_accuracy", "code_bits", "cycles", "luts")},
        "baseline_on_front": any(r["trial"] == baseline["trial"] for r in front),
        "best_accuracy_at_equal_or_fewer_bits": at_bits and {
            "label": at_bits["label"], "integer_accuracy": at_bits["integer_accuracy"],
            "code_bits": at_bits["code_bits"],
            "accuracy_gain": at_bits["integer_accuracy"] - baseline["integer_accuracy"]},
        "fewest_bits_at_equal_or_better_accuracy": at_accuracy and {
            "label": at_accuracy["label"], "integer_accuracy": at_accuracy["integer_accuracy"],
            "code_bits": at_accuracy["code_bits"],
            "bits_ratio": at_accuracy["code_bits"] / baseline["code_bits"]},
    }


def materialize(front, trained, count, out_dir):
    """Write the ``.tern`` of ``count`` front points (RTL-mappable ones first, then spread over
    code bits), each packed for its P; returns their records with ``path``."""
    mappable = [r for r in front if r["rtl_mappable"]]
    others = [r for r in front if not r["rtl_mappable"]]
    chosen = (_spread(mappable, count) + _spread(others, count))[:count]
    out = []
    for rec in chosen:
        network = network_from_bytes(trained[(tuple(rec["codings"]), tuple(rec["widths"]))]["tern"])
        network.lanes = rec["lanes"]
        name = f"front-t{rec['trial']}-{'_'.join(c.replace(',', 'k') for c in rec['codings'])}" \
               f"-h{'-'.join(map(str, rec['widths']))}-p{rec['lanes']}.tern"
        path = Path(out_dir) / name
        from ..network import save_network
        save_network(network, path)
        out.append({"path": str(path), "label": rec["label"], "trial": rec["trial"],
                    "rtl_mappable": rec["rtl_mappable"]})
    return out


def _spread(rows, count):
    """Up to ``count`` of ``rows`` (sorted by code bits) evenly spaced over the list."""
    if len(rows) <= count:
        return list(rows)
    return [rows[round(i * (len(rows) - 1) / max(count - 1, 1))] for i in range(count)]


def plot_front(front, evaluated, baseline, path, title):
    """Accuracy against code bits, cycles and LUTs: every evaluated point, the front marked
    (filled: maps onto today's RTL; hollow: needs the mixed-coding RTL), the baseline starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, key, label in zip(axes, ("code_bits", "cycles", "luts"),
                              ("weight code bits", "cycles per inference (exact if RTL-mappable)",
                               "LUT4 (fitted area model)")):
        ax.scatter([r[key] for r in evaluated], [100 * r["integer_accuracy"] for r in evaluated],
                   s=12, c="0.75", label="evaluated")
        for mappable, style in ((True, {"c": "tab:blue"}), (False, {"facecolors": "none", "edgecolors": "tab:red"})):
            rows = [r for r in front if r["rtl_mappable"] is mappable]
            ax.scatter([r[key] for r in rows], [100 * r["integer_accuracy"] for r in rows], s=36,
                       label="front, " + ("maps onto today's RTL" if mappable else "mixed coding"), **style)
        ax.scatter([baseline[key]], [100 * baseline["integer_accuracy"]], marker="*", s=160, c="k",
                   label="uniform (8,2) baseline")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("integer accuracy (%)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
