"""``ternac accuracy``: measure the accuracy table of ``docs/accuracy.md``.

For each architecture (an MLP and a small CNN) and each weight format (float, dense ternary,
(8,2), (16,3), (8,1), a learned 6-bit codebook over 8 weights) and each retraining schedule
(oneshot, gradual, stochastic), train and report the integer reference accuracy on the test
split with the bits per weight; then a hidden-width sweep of the MLP (float against (8,2))
with the effective compression ratio of Sung, Shin & Hwang (arXiv 1511.06488).

Every configuration's result is cached as JSON under ``--cache`` (and float models under
``--cache/float``), so an interrupted run resumes where it stopped.
"""

import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .train import TrainOptions, train_network

FORMATS = [  # label, coding, codebook bits
    ("dense ternary (8,8)", "8,8", None),
    ("(8,2)", "8,2", None),
    ("(16,3)", "16,3", None),
    ("(8,1)", "8,1", None),
    ("(8,2), learned 6-bit codebook", "8,2", 6),
]
# the order the configurations are trained in: the target formats first
PRIORITY = ["(8,2)", "(16,3)", "(8,2), learned 6-bit codebook", "(8,1)", "dense ternary (8,8)"]
SCHEDULE_NAMES = ("oneshot", "gradual", "stochastic")
PLANS = {
    "full": {"dataset": "fashion-mnist",
             # the CNN of the targets; "CNN (previous)" is the cnn:16-32 table measured before
             "archs": {"MLP": "mlp:784-256-256-10", "CNN": "cnn:32-64",
                       "CNN (previous)": "cnn:16-32"},
             "epochs": {"MLP": (15, 8), "CNN": (6, 12), "CNN (previous)": (10, 4)},
             "sweep": [8, 16, 32, 64, 128, 256], "sweep_epochs": (15, 8),
             # CNN (8,2) variants of cnn:16-32: longer retraining; first and last layers kept denser
             "extras_arch": "CNN (previous)",
             "extras": [("(8,2), 10 retraining epochs", {"coding": "8,2", "qat_epochs": 10}),
                        ("(8,2), first and last layers (8,8)", {"coding": "8,2", "edge_coding": "8,8"}),
                        ("(8,2), first and last layers (8,8), 10 retraining epochs",
                         {"coding": "8,2", "edge_coding": "8,8", "qat_epochs": 10})]},
    "quick": {"dataset": "digits",
              "archs": {"MLP": "mlp:64-32-10", "CNN": "cnn:8-16"},
              "epochs": {"MLP": (10, 4), "CNN": (10, 4)},
              "sweep": [8, 16, 32], "sweep_epochs": (10, 4)},
}


def configure(parser):
    parser.add_argument("--plan", choices=list(PLANS), default="full",
                        help="full: Fashion-MNIST (about an hour on 2 cores); quick: digits smoke run")
    parser.add_argument("--md", default="docs/accuracy.md", help="markdown report to write")
    parser.add_argument("--json-out", default="docs/accuracy.json", help="JSON results to write")
    parser.add_argument("--plot", default="docs/accuracy.png", help="PNG plot to write ('' for none)")
    parser.add_argument("--cache", default="results/accuracy-cache", help="per-configuration cache")
    parser.add_argument("--parts", default="MLP,CNN,CNN (previous),sweep,extras",
                        help="comma list of MLP, CNN, CNN (previous), sweep, extras")
    parser.add_argument("--formats", action="append", metavar="LABEL",
                        help="train only this format of the tables, e.g. '(8,2)' (repeatable; "
                             "default all)")
    parser.add_argument("--schedules", help="train only these schedules of the tables "
                        "(comma list; default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the report from the cached configurations")


# options that do not change the result (threads can change float rounding only)
_UNKEYED = ("threads", "progress")


# options added later: absent from older cached results, so left out while unset
_OPTIONAL = ("edge_coding",)


def _identity(options):
    return {k: v for k, v in options.items()
            if k not in _UNKEYED and not (k in _OPTIONAL and v is None)}


def _key(opts):
    return hashlib.sha1(json.dumps(_identity(asdict(opts)), sort_keys=True).encode()).hexdigest()[:16]


def _find_cached(cache, opts):
    """The cached result of ``opts``: by key, else any result file with the same options."""
    path = cache / f"{_key(opts)}.json"
    if path.exists():
        return json.loads(path.read_text())
    wanted = json.loads(json.dumps(_identity(asdict(opts))))
    for other in cache.glob("*.json"):
        result = json.loads(other.read_text())
        if _identity(result.get("options", {})) == wanted:
            return result
    return None


class Runner:
    def __init__(self, args, say):
        self.cache = Path(args.cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.say = say
        self.args = args
        self.count = 0

    def run(self, label, **fields):
        opts = TrainOptions(seed=self.args.seed, threads=self.args.threads, **fields)
        path = self.cache / f"{_key(opts)}.json"
        self.count += 1
        result = _find_cached(self.cache, opts)
        if result is not None:
            self.say(f"[{self.count}] {label}: cached, integer {100 * result['integer_accuracy']:.2f} %")
            return result
        if self.args.report_only:
            self.say(f"[{self.count}] {label}: not measured yet")
            return None
        self.say(f"[{self.count}] {label} ...")
        start = time.perf_counter()
        _, _, result = train_network(opts, say=lambda text: self.say("    " + text),
                                     float_cache=self.cache / "float")
        result["label"] = label
        result["measured_seconds"] = time.perf_counter() - start
        path.write_text(json.dumps(result, indent=1))
        self.say(f"    done in {result['measured_seconds']:.0f} s")
        return result


def run(args, say):
    plan = PLANS[args.plan]
    parts = {p.strip() for p in args.parts.split(",")}
    runner = Runner(args, say)
    dataset = plan["dataset"]
    start = time.perf_counter()
    results = {"dataset": dataset, "plan": args.plan, "seed": args.seed, "tables": {}, "sweep": []}
    for name, arch in plan["archs"].items():
        if name not in parts:
            continue
        fe, qe = plan["epochs"][name]
        rows = []
        for label, coding, book in sorted(FORMATS, key=lambda f: PRIORITY.index(f[0])):
            if args.formats and label not in args.formats:
                continue
            row = {"format": label, "coding": coding, "codebook_bits": book, "runs": {}}
            if name == "MLP":                        # projection without retraining, for reference
                row["runs"]["none"] = runner.run(f"{name} {label} no retraining", dataset=dataset,
                                                 arch=arch, coding=coding, codebook_bits=book,
                                                 schedule="oneshot", float_epochs=fe, qat_epochs=0)
            for schedule in SCHEDULE_NAMES:
                if args.schedules and schedule not in args.schedules.split(","):
                    continue
                row["runs"][schedule] = runner.run(f"{name} {label} {schedule}", dataset=dataset,
                                                   arch=arch, coding=coding, codebook_bits=book,
                                                   schedule=schedule, float_epochs=fe, qat_epochs=qe)
            row["runs"] = {k: v for k, v in row["runs"].items() if v is not None}
            if row["runs"]:
                rows.append(row)
            rows.sort(key=lambda r: [f[0] for f in FORMATS].index(r["format"]))
            results["tables"][name] = {"arch": arch, "float_epochs": fe, "retrain_epochs": qe,
                                       "rows": rows}
            _write(results, args, time.perf_counter() - start)
    if "sweep" in parts:
        fe, qe = plan["sweep_epochs"]
        for width in plan["sweep"]:
            arch = f"mlp:{_inputs(dataset)}-{width}-{width}-10"
            for label, coding in (("(8,2)", "8,2"),):
                result = runner.run(f"sweep {arch} {label}", dataset=dataset, arch=arch,
                                    coding=coding, schedule="oneshot", float_epochs=fe,
                                    qat_epochs=qe)
                if result is not None:
                    results["sweep"].append({"width": width, "arch": arch, "format": label, **result})
            _write(results, args, time.perf_counter() - start)
    if "extras" in parts and plan.get("extras"):
        name = plan.get("extras_arch", "CNN")
        fe, qe = plan["epochs"][name]
        results["extras"] = []
        results["extras_arch"] = plan["archs"][name]
        for label, fields in plan["extras"]:
            fields = {"qat_epochs": qe, **fields}
            result = runner.run(f"extra CNN {label}", dataset=dataset, arch=plan["archs"][name],
                                schedule="oneshot", float_epochs=fe, **fields)
            if result is not None:
                results["extras"].append({**result, "label": label})
            _write(results, args, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    _write(results, args, seconds, final=True)
    say(f"wrote {args.md} and {args.json_out} ({seconds / 60:.1f} min)")
    return {"md": args.md, "json": args.json_out, "seconds": seconds,
            "configurations": runner.count}


def _inputs(dataset):
    return 64 if dataset == "digits" else 784


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def effective_compression(sweep):
    """Sung et al.'s effective compression ratio for every ternary point of the sweep.

    The float size needed to reach the ternary network's accuracy (log-linear interpolation of
    float size against accuracy over the sweep's float networks) divided by the ternary
    network's all-in size. ``None`` when no float network of the sweep is as inaccurate (the
    ratio would need extrapolation) or none is as accurate.
    """
    floats = sorted({(r["width"], r["float_bits"], r["float_accuracy"]) for r in sweep})
    out = []
    for r in sweep:
        target = r["integer_accuracy"]
        size = None
        for (_, b0, a0), (_, b1, a1) in itertools.pairwise(floats):
            lo, hi = min(a0, a1), max(a0, a1)
            if lo <= target <= hi and a1 != a0:
                t = (target - a0) / (a1 - a0)
                size = math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
                break
        out.append(None if size is None else size / r["total_bits"])
    return out


def _write(results, args, seconds, final=False):
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    results = dict(results, seconds=seconds, complete=final)
    Path(args.json_out).write_text(json.dumps(results, indent=1))
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text(_markdown(results, args))
    if final and args.plot:
        try:
            _plot(results, args.plot)
        except ImportError:
            print("matplotlib is missing: no plot", file=sys.stderr)


# (table, format, largest gap to float in points) of the targets, plus float floors
TARGETS = [("MLP", "(8,2)", 1.0), ("MLP", "(16,3)", 1.5), ("CNN", "(8,2)", 1.0)]
FLOAT_FLOORS = {"MLP": 89.0, "CNN": 90.0}


def _targets(results):
    """Markdown lines checking the Fashion-MNIST targets against the best schedule."""
    if results["dataset"] != "fashion-mnist":
        return []
    lines = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for name, floor in FLOAT_FLOORS.items():
        table = results["tables"].get(name)
        if table and table["rows"]:
            acc = 100 * next(iter(table["rows"][0]["runs"].values()))["float_accuracy"]
            lines.append(f"| {name} float >= {floor:.0f} % | {acc:.2f} % | {'yes' if acc >= floor else 'no'} |")
    for name, fmt, gap in TARGETS:
        table = results["tables"].get(name)
        row = next((r for r in (table or {}).get("rows", []) if r["format"] == fmt), None)
        runs = {k: v for k, v in (row or {}).get("runs", {}).items() if k != "none"}
        if not runs:
            continue
        sched, best = max(runs.items(), key=lambda item: item[1]["integer_accuracy"])
        diff = 100 * (best["integer_accuracy"] - best["float_accuracy"])
        lines.append(f"| {name} {fmt} integer within {gap} point of float | {diff:+.2f} points "
                     f"({sched}) | {'yes' if diff >= -gap else 'no'} |")
    return lines + [""]


def _markdown(results, args):
    ds = results["dataset"]
    runs = [run for table in results["tables"].values() for row in table["rows"]
            for run in row["runs"].values()] + list(results["sweep"]) + list(results.get("extras", []))
    lines = [
        "# Accuracy of ternac networks",
        "",
        (f"Measured by `ternac accuracy --plan {results['plan']}` (this file and "
        f"`{args.json_out}` are written by it; per-configuration results are cached in "
        f"`{args.cache}`, so a rerun only trains what is missing). Data set: **{ds}**, test "
        f"split; seed {results['seed']}. Measuring the {len(runs)} configurations below took "
        f"{sum(r.get('measured_seconds', 0) for r in runs) / 60:.0f} min of wall time in total "
        f"(sum over configurations, float training included once per architecture; on 2 shared "
        f"CPU cores, 1 thread per process)."),
        "",
        ("Every ternary accuracy is that of the **integer reference executor** "
        "(`reference.golden_predict`) on int8 inputs, for the `.tern` network that "
        "`convert.quantize_network` exports from the retrained float shadow weights -- not the "
        "accuracy of the float shadow. All layers, first and last included, are ternary."),
        "",
        ("Every section's heading names the architecture its rows were measured with; a format "
        "or schedule not measured for an architecture has no row or an empty cell."),
        "",
        ("Bits per weight: *codes* = code bits / weights; *all-in* adds the per-channel integer "
        "bias, multiplier and shift and the decoder tables (a learned codebook's table per layer, "
        "the default table once), as `model/bits.py` counts them. Float is 32 b/w."),
        "",
        ("Schedules (same number of retraining steps each, starting from the same float model): "
        "**oneshot** projects onto the target (N,K) at once and retrains with the projection in the "
        "loop (straight-through estimator, float shadow weights, per-row scales refitted by "
        "least squares at every step); **gradual** prunes step by step (at most N, N/2, ..., K "
        "non-zeros per sub-vector; the intermediate levels share the first half of the steps) with "
        "weight-distribution normalisation before every step; **stochastic** quantizes a random, "
        "linearly growing share of every layer's sub-vectors (from 1/S to all over the first 3/4 of "
        "the steps), fully ternary for the last quarter. *no retraining* is the bare projection of "
        "the float model."),
        "",
    ]
    for name, table in results["tables"].items():
        if not table["rows"]:
            continue
        any_run = next(iter(table["rows"][0]["runs"].values()))
        lines += [f"## {name} `{table['arch']}`", "",
                  (f"Float model: **{_pct(any_run['float_accuracy'])} %** (32 b/w), "
                  f"{table['float_epochs']} epochs, {any_run['float_seconds']:.0f} s. "
                  f"Retraining: {table['retrain_epochs']} epochs."), ""]
        scheds = [s for s in ("none", *SCHEDULE_NAMES) if any(s in r["runs"] for r in table["rows"])]
        head = ["format", "b/w codes", "b/w all-in"] + [
            "no retraining" if s == "none" else s for s in scheds] + ["best gap to float"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in table["rows"]:
            runs = row["runs"]
            r = next(iter(runs.values()))
            best = max(runs[s]["integer_accuracy"] for s in scheds if s != "none" and s in runs) \
                if any(s in runs for s in SCHEDULE_NAMES) else None
            cells = [row["format"], f"{r['bits_per_weight_codes']:.3f}",
                     f"{r['bits_per_weight_all_in']:.3f}"]
            cells += [_pct(runs[s]["integer_accuracy"]) if s in runs else "" for s in scheds]
            cells.append("-" if best is None else f"{100 * (best - r['float_accuracy']):+.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Retraining wall time per schedule (s), float shadow accuracy (%) in brackets:", ""]
        lines += ["| format | " + " | ".join(scheds) + " |", "|---|" + "---|" * len(scheds)]
        for row in table["rows"]:
            cells = [row["format"]] + [
                f"{row['runs'][s]['retrain_seconds']:.0f} ({_pct(row['runs'][s]['shadow_accuracy'])})"
                if s in row["runs"] else "" for s in scheds]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results.get("extras"):
        lines += [f"## CNN `{results.get('extras_arch', 'cnn')}` variants (oneshot schedule)", "",
                  ("The first and last layers kept at (8,8) dense ternary make a network of mixed "
                   "codings: the golden model and the `.tern` format hold it (every layer has its "
                   "own codebook); the accelerator runs it with a K=8 array and 13-bit codes "
                   "(`docs/architecture.md`, mixed codings; measured on the RTL in "
                   "`docs/simulation.md`)."), "",
                  "| variant | b/w codes | b/w all-in | float % | ternary integer % | gap |",
                  "|---|---|---|---|---|---|"]
        for r in results["extras"]:
            lines.append(f"| {r['label']} | {r['bits_per_weight_codes']:.3f} | "
                         f"{r['bits_per_weight_all_in']:.3f} | {_pct(r['float_accuracy'])} | "
                         f"{_pct(r['integer_accuracy'])} | "
                         f"{100 * (r['integer_accuracy'] - r['float_accuracy']):+.2f} |")
        lines.append("")
    lines += _targets(results)
    if results["sweep"]:
        ecr = effective_compression(results["sweep"])
        lines += ["## Network size: where the ternary gap closes", "",
                  ("MLP `784-W-W-10` (oneshot schedule). *Gap* = integer ternary minus float of the "
                  "same width. *Compression* = float32 size / all-in ternary size of the same "
                  "network. *Effective compression* (Sung, Shin & Hwang): size of a float network "
                  "of this sweep reaching the same accuracy (log-linear interpolation in width) / "
                  "all-in size of the ternary network; '-' where the sweep's float networks do not "
                  "bracket that accuracy."), "",
                  ("| W | format | float % | float kbit | ternary integer % | gap | b/w all-in "
                  "| ternary kbit | compression | effective compression |"),
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r, e in zip(results["sweep"], ecr):
            lines.append(
                f"| {r['width']} | {r['format']} | {_pct(r['float_accuracy'])} | {r['float_bits'] / 1e3:.0f} | "
                f"{_pct(r['integer_accuracy'])} | {100 * (r['integer_accuracy'] - r['float_accuracy']):+.2f} | "
                f"{r['bits_per_weight_all_in']:.3f} | {r['total_bits'] / 1e3:.0f} | "
                f"{r['float_bits'] / r['total_bits']:.1f} | {'-' if e is None else f'{e:.1f}'} |")
        lines.append("")
    lines += [
        "## How to reproduce and what the numbers mean", "",
        ("* `ternac accuracy` (about 1.5 h of CPU time on 2 shared cores; rerunning only trains "
        "configurations missing from the cache; `--report-only` rewrites this file from the "
        "cache; `--plan quick` is a digits smoke run). One network: `ternac train --dataset "
        "fashion-mnist --arch mlp:784-256-256-10 --coding 8,2 --out net.tern --json`, then "
        "`ternac eval net.tern --dataset fashion-mnist`."),
        ("* Inputs are pixels in [0, 1], quantized to int8 with the calibrated input scale; "
        "activation scales are calibrated on 4096 training images (99.99th percentile of |x|)."),
        ("* The retrained networks contain no BatchNorm (the architectures have none; a user's "
        "network imported with BatchNorm is folded by the importer before retraining), so the "
        "weights projected in training are exactly the exported ones."),
        ("* Bits per weight all-in count the default decoder ROM once per network: with 6561 "
        "entries for (8,8) and 4993 for (16,3) it weighs heavily on small networks (the CNN)."),
        "",
    ]
    if results.get("complete") and Path(args.plot or "/nonexistent").name:
        lines += [f"![accuracy against bits per weight and width]({Path(args.plot).name})", ""]
    return "\n".join(lines) + "\n"


def _plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    markers = {"oneshot": "o", "gradual": "s", "stochastic": "^"}
    for name, table in results["tables"].items():
        for sched, marker in markers.items():
            pts = [(row["runs"][sched]["bits_per_weight_all_in"], 100 * row["runs"][sched]["integer_accuracy"])
                   for row in table["rows"] if sched in row["runs"]]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, label=f"{name} {sched}")
        if not table["rows"]:
            continue
        f = 100 * next(iter(table["rows"][0]["runs"].values()))["float_accuracy"]
        ax.axhline(f, linestyle="--", linewidth=0.8, color="gray")
        ax.annotate(f"{name} float", (0.02, f), xycoords=("axes fraction", "data"), fontsize=8)
    ax.set_xlabel("bits per weight (all-in)")
    ax.set_ylabel(f"{results['dataset']} test accuracy, integer reference (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    sweep = results["sweep"]
    if sweep:
        widths = sorted({r["width"] for r in sweep})
        fl = {r["width"]: 100 * r["float_accuracy"] for r in sweep}
        ax.plot(widths, [fl[w] for w in widths], "k-o", label="float")
        for label in sorted({r["format"] for r in sweep}):
            pts = sorted((r["width"], 100 * r["integer_accuracy"]) for r in sweep if r["format"] == label)
            ax.plot(*zip(*pts), "-s", label=f"ternary {label}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width W of mlp:784-W-W-10")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
