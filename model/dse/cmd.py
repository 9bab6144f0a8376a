"""``ternac dse``: search the per-layer coding policy, hidden widths and lanes P together.

Objectives: integer accuracy, weight code bits, energy per inference, cycles and LUTs
(``docs/dse.md``). Optuna's NSGA-II proposes points; after a warm-up an accuracy predictor
fitted on the trained configurations screens the candidates so only promising ones are
trained (LINAS). Writes ``front.json`` (the Pareto front, every evaluated point, the
predictor's held-out rank correlation) and ``front.png`` to ``--out``; ``--materialize K``
writes the ``.tern`` of K front points. Trainings run in ``--workers`` local processes, or as
Ray tasks with ``--ray ADDRESS``.
"""

import json
import sys
import time
from pathlib import Path

from ..codebook import TernacError
from ..datasets import DATASETS

__all__ = ["configure", "run"]


def configure(parser):
    parser.add_argument("--dataset", choices=list(DATASETS), default="digits")
    parser.add_argument("--codings", default="8,1 8,2 16,3 8,8 learned6",
                        help="coding menu per layer, space-separated: 'N,K' or learnedB "
                        "(default: '8,1 8,2 16,3 8,8 learned6')")
    parser.add_argument("--widths", default="16,32,64", help="hidden width menu (default 16,32,64)")
    parser.add_argument("--hidden-layers", type=int, default=1, help="hidden layers of the MLP (default 1)")
    parser.add_argument("--lanes", default="4,8,16", help="lane count menu P (default 4,8,16)")
    parser.add_argument("--trainings", type=int, default=12, help="networks to train (default 12)")
    parser.add_argument("--warmup", type=int, default=4, help="trainings before the predictor screens")
    parser.add_argument("--screen", type=int, default=4,
                        help="candidates the predictor screens per training (default 4)")
    parser.add_argument("--population", type=int, default=8, help="NSGA-II population (default 8)")
    parser.add_argument("--float-epochs", type=float, default=20)
    parser.add_argument("--epochs", type=float, default=10, help="ternary retraining epochs")
    parser.add_argument("--workers", type=int, default=2, help="local training processes (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads per training")
    parser.add_argument("--ray", metavar="ADDRESS", help="run each training as a task on this Ray cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="DIR", help="output directory (default build/dse/DATASET)")
    parser.add_argument("--materialize", type=int, default=0, metavar="K",
                        help="write the .tern of K front points")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")


def run(args, say):
    from ..datasets import load_dataset
    from .area import COEFFICIENTS, MEASURED
    from .front import compare_with_baseline, materialize, pareto_front, plot_front, record
    from .objectives import MINIMISED
    from .predictor import leave_one_out, rank_correlation
    from .runner import make_runner
    from .search import SearchSettings, run_search
    from .space import Point, Space

    space = Space.parse(args.codings, args.widths, args.lanes, args.hidden_layers)
    for name, value, low in (("--trainings", args.trainings, 1), ("--warmup", args.warmup, 3),
                             ("--screen", args.screen, 1), ("--population", args.population, 2),
                             ("--workers", args.workers, 1), ("--threads", args.threads, 1),
                             ("--materialize", args.materialize, 0)):
        if value < low:
            raise TernacError(f"{name} must be at least {low}, got {value}")
    data = load_dataset(args.dataset)
    inputs, classes = int(data.x_train[0].size), data.classes
    out = Path(args.out or f"build/dse/{args.dataset}")
    out.mkdir(parents=True, exist_ok=True)
    settings = SearchSettings(dataset=args.dataset, inputs=inputs, classes=classes,
                              trainings=args.trainings, warmup=args.warmup, screen=args.screen,
                              population=args.population, float_epochs=args.float_epochs,
                              epochs=args.epochs, threads=args.threads, seed=args.seed,
                              float_cache=None if args.ray else str(out / "float-cache"))
    base_coding = "8,2" if "8,2" in space.codings else space.codings[0]
    baseline = Point((base_coding,) * space.weight_layers,
                     (space.widths[len(space.widths) // 2],) * space.hidden_layers,
                     8 if 8 in space.lanes else space.lanes[0])

    def progress(text):
        if not args.no_progress:
            print(f"ternac dse: {text}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    runner = make_runner(args.ray, args.workers, args.threads)
    try:
        study, entries, trained, screening = run_search(space, settings, runner, baseline, progress)
    finally:
        runner.close()
    seconds = time.perf_counter() - start
    evaluated = [record(e) for e in entries]
    front = pareto_front(study, evaluated)
    base = next(r for r in evaluated if r["trial"] == 0)
    points = [Point(c, w, 8) for c, w in trained]
    accuracy = [trained[k]["integer_accuracy"] for k in trained]
    loo = leave_one_out(points, accuracy, inputs, classes) if len(points) >= 4 else []
    summary = {
        "ok": True, "dataset": args.dataset, "objectives": ["integer_accuracy", *MINIMISED[1:]],
        "minimised": list(MINIMISED),
        "space": {"codings": list(space.codings), "widths": list(space.widths),
                  "lanes": list(space.lanes), "hidden_layers": space.hidden_layers},
        "settings": {k: getattr(settings, k) for k in ("trainings", "warmup", "screen", "population",
                                                       "float_epochs", "epochs", "threads", "seed")},
        "runner": runner.name, "workers": runner.workers, "seconds": seconds,
        "front": front, "evaluated": evaluated,
        "vs_baseline": compare_with_baseline(front, base),
        "predictor": {**screening, "leave_one_out_spearman": rank_correlation(loo, accuracy) if loo else None},
        "area_model": {"coefficients": list(COEFFICIENTS), "measured": [list(r) for r in MEASURED],
                       "source": "python -m ternac.fpga.area_sweep (ULX3S ECP5-85F builds, "
                                 "ternac.model.dse.area)"},
    }
    summary["materialized"] = materialize(front, trained, args.materialize, out) if args.materialize else []
    (out / "front.json").write_text(json.dumps(summary, indent=2))
    plot_front(front, evaluated, base, out / "front.png",
               f"ternac dse {args.dataset}: {len(front)} front points of {len(evaluated)} evaluated, "
               f"{screening['trainings']} trained")
    summary.update(json=str(out / "front.json"), plot=str(out / "front.png"))
    say(f"{len(front)} Pareto points of {len(evaluated)} evaluated ({screening['trainings']} trained, "
        f"{screening['screened_out']} screened out by the predictor) in {seconds:.0f} s")
    for r in front:
        say(f"  {r['label']:<40} {100 * r['integer_accuracy']:6.2f} %  {r['code_bits']:>8} bits  "
            f"{r['energy_pj'] / 1000:8.2f} nJ  {r['cycles']:>6} cycles  {r['luts']:>6} LUT  "
            f"{'RTL' if r['rtl_mappable'] else 'mixed'}")
    rho = summary["predictor"]["held_out_spearman"]
    say(f"predictor: Spearman {rho if rho is None else f'{rho:.2f}'} on "
        f"{screening['held_out_pairs']} held-out configurations")
    for m in summary["materialized"]:
        say(f"wrote {m['path']}")
    say(f"wrote {out / 'front.json'} and {out / 'front.png'}")
    return summary
