"""``ternac demo``: the main job end to end, as the commands a user would type.

train (float, then ternary retraining) -> info -> eval -> verilog -> sim on Verilator and
Icarus (bit-exact and cycle-exact against the golden model) -> energy. Each step is printed
as its command line, so the demo doubles as a tutorial.
"""

import shlex
import time
from pathlib import Path


def configure(parser):
    parser.add_argument("--out", default="out/demo", help="directory for the network, Verilog and logs")
    parser.add_argument("--dataset", default="digits", help="digits (fast), mnist5k or fashion-mnist")
    parser.add_argument("--arch", default="mlp:64-64-10")
    parser.add_argument("--coding", default="8,2")
    parser.add_argument("--samples", type=int, default=100, help="test samples run on the simulated RTL")


def _net_path(args):
    return str(Path(args.out) / f"{args.dataset}.tern")


def steps(args):
    out, net = Path(args.out), _net_path(args)
    sim = ["sim", net, "--dataset", args.dataset, "--samples", str(args.samples)]
    return [
        ("train", ["train", "--dataset", args.dataset, "--arch", args.arch, "--coding", args.coding,
                   "--out", net]),
        ("info", ["info", net]),
        ("eval", ["eval", net, "--dataset", args.dataset]),
        ("verilog", ["verilog", "--net", net, "--out", str(out / "verilog")]),
        ("sim_verilator", sim + ["--simulator", "verilator"]),
        ("sim_icarus", sim[:-1] + [str(min(args.samples, 10)), "--simulator", "icarus"]),
        ("energy", ["energy", net]),
    ]


def run(args, say):
    from .cli import parse_args

    Path(args.out).mkdir(parents=True, exist_ok=True)
    summary, start = {}, time.perf_counter()
    for name, argv in steps(args):
        say(f"\n$ ternac {shlex.join(argv)}")
        step_args = parse_args(argv)
        began = time.perf_counter()
        summary[name] = step_args._module.run(step_args, say)
        summary[name]["seconds"] = time.perf_counter() - began
        if summary[name].get("ok") is False:          # go on: the remaining steps still report
            say(f"step {name} failed: {summary[name].get('failed')}")
    failed = [name for name, step in summary.items() if step.get("ok") is False]
    train = summary["train"]
    say(f"\nfloat {100 * train['float_accuracy']:.2f} % -> ternary integer {100 * train['integer_accuracy']:.2f} % "
        f"at {train['bits_per_weight_codes']:.3f} code bits/weight; RTL bit-exact and cycle-exact on "
        f"Verilator and Icarus: {'NO' if failed else 'yes'}; "
        f"energy x{summary['energy']['ratios_vs_ternac']['int8']:.1f} below dense int8 "
        f"({time.perf_counter() - start:.0f} s)")
    summary.update(signed_off=not failed, ok=not failed,
                   failed=f"failed steps: {', '.join(failed)}" if failed else None)
    out = Path(args.out) / "report"
    say(f"\n$ ternac report {_net_path(args)} --out {out} (with the sim results above)")
    report = parse_args(["report", _net_path(args), "--out", str(out),
                         "--dataset", args.dataset, "--samples", str(args.samples)])
    summary["report"] = report._module.run(report, say, sim_summaries=[
        {**summary[s], "source": f"ternac demo ({s})"} for s in ("sim_verilator", "sim_icarus")])
    return summary
