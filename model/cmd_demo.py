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


def steps(args):
    out = Path(args.out)
    net = str(out / f"{args.dataset}.tern")
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
    from .cli import build_parser

    Path(args.out).mkdir(parents=True, exist_ok=True)
    parser = build_parser()
    summary, start = {}, time.perf_counter()
    for name, argv in steps(args):
        say(f"\n$ ternac {shlex.join(argv)}")
        step_args = parser.parse_args(argv + (["--json"] if args.json else []))
        began = time.perf_counter()
        summary[name] = step_args._module.run(step_args, say)
        summary[name]["seconds"] = time.perf_counter() - began
    train, sims = summary["train"], [summary["sim_verilator"], summary["sim_icarus"]]
    ok = all(s["bit_exact"] and s["cycles_per_inference"] == s["predicted_cycles"] for s in sims)
    say(f"\nfloat {100 * train['float_accuracy']:.2f} % -> ternary integer {100 * train['integer_accuracy']:.2f} % "
        f"at {train['bits_per_weight_codes']:.3f} code bits/weight; RTL bit-exact and cycle-exact on "
        f"Verilator and Icarus: {'yes' if ok else 'NO'}; "
        f"energy x{summary['energy']['ratios_vs_ternac']['int8']:.1f} below dense int8 "
        f"({time.perf_counter() - start:.0f} s)")
    summary["signed_off"] = ok
    say(f"\n$ ternac report {summary['info']['net']} --out {Path(args.out) / 'report'} (with the sim results above)")
    report = parser.parse_args(["report", summary["info"]["net"], "--out", str(Path(args.out) / "report"),
                                "--dataset", args.dataset, "--samples", str(args.samples)])
    summary["report"] = report._module.run(report, say, sim_summaries=[
        {**summary[s], "source": f"ternac demo ({s})"} for s in ("sim_verilator", "sim_icarus")])
    return summary
