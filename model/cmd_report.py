"""``ternac report NET.tern --out DIR``: the design review, as one HTML page and Markdown.

The network, its layers (bits, sparsity, accumulator, cycles, utilization), accuracy (float,
integer reference, RTL), sign-off per simulator with tool versions, FPGA builds, energy per
inference against fp32/int8/dense ternary, every assumption, and plots. A part that was not
measured is marked MISSING with the command that produces it.
"""

import shlex
import sys

from .codebook import TernacError
from .network import load_network


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--out", default="out/report", help="directory to write (default: out/report)")
    parser.add_argument("--lanes", type=int, help="accelerator lanes (default: the network's)")
    parser.add_argument("--dataset", help="measure the integer reference (and, with --sim, the RTL) "
                        "accuracy on this data set's test split (digits, fashion-mnist, mnist5k)")
    parser.add_argument("--samples", type=int, default=100,
                        help="test samples evaluated and simulated (default: 100)")
    parser.add_argument("--sim", action="store_true", help="run the samples on Verilator (sign-off)")
    parser.add_argument("--icarus", action="store_true", help="with --sim: also on Icarus Verilog")
    parser.add_argument("--sim-json", action="append", default=[], metavar="FILE",
                        help="a saved `ternac sim --json` output (repeatable)")
    parser.add_argument("--fpga-json", action="append", default=[], metavar="FILE",
                        help="an FPGA report.json (repeatable; default: build/fpga/*/report.json)")


def command_line(args):
    """The ``ternac report`` command that reproduces this run."""
    argv = ["ternac", "report", args.net, "--out", args.out, "--samples", str(args.samples)]
    argv += ["--lanes", str(args.lanes)] if args.lanes else []
    argv += ["--dataset", args.dataset] if args.dataset else []
    argv += ["--sim"] if args.sim else []
    argv += ["--icarus"] if args.icarus else []
    for flag, files in (("--sim-json", args.sim_json), ("--fpga-json", args.fpga_json)):
        for path in files:
            argv += [flag, path]
    return shlex.join(argv)


def run(args, say, sim_summaries=()):
    from .report import collect, load_sim_json, write_report

    if args.icarus and not args.sim:
        raise TernacError("--icarus runs with --sim (the Verilator sign-off) only")
    net = load_network(args.net)
    simulators = (["verilator"] + (["icarus"] if args.icarus else [])) if args.sim else []
    report = collect(
        net, args.net, lanes=args.lanes, dataset=args.dataset, samples=args.samples,
        simulators=simulators, sim_runs=[*sim_summaries, *map(load_sim_json, args.sim_json)],
        fpga_json=args.fpga_json, command=command_line(args),
        progress=lambda text: print(f"ternac report: {text}", file=sys.stderr, flush=True))
    summary = write_report(report, args.out)
    for name, state in summary["sections"].items():
        say(f"{name:>12}: {state}")
    for item in summary["missing"]:
        say(f"MISSING ({item['section']}): {item['missing']}; to produce: {item['command']}")
    say(f"report: {summary['html']} (and {summary['markdown']})")
    return summary
