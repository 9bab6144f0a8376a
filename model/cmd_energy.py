"""``ternac energy NET.tern``: the four-design energy table per inference."""

import json

from .codebook import TernacError
from .energy import DESIGNS, energy_report
from .hw import lower
from .network import file_sha256, load_network


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--lanes", type=int, help="override the network's lane count")
    parser.add_argument("--actions", action="store_true", help="list every action count")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart of compute and memory energy")
    parser.add_argument("--measured", metavar="SIM.json",
                        help="charge the action counts the RTL measured (`ternac sim NET.tern --json`) "
                        "instead of the program's")


def run(args, say):
    net = load_network(args.net)
    measured = measured_actions(args.measured, args.net, net, args.lanes) if args.measured else None
    report = energy_report(net, args.lanes, measured=measured)
    say(f"energy per inference, {args.net}, 45 nm (Horowitz 2014), {report['lanes']} lanes; "
        f"ternac counts: {report['source']}" + (f" ({args.measured})" if args.measured else ""))
    if not report["mappable"]:
        say(f"note: the ternac accelerator cannot run this network ({report['reason']}); "
            f"the ternac row estimates the same dataflow, not a mapped network")
    say(f"{'design':>14} {'total nJ':>10} {'compute nJ':>11} {'memory nJ':>10} {'x ternac':>9}")
    for d in DESIGNS:
        row = report["designs"][d]
        say(f"{d:>14} {row['total_pj'] / 1e3:>10.2f} {row['compute_pj'] / 1e3:>11.2f} "
            f"{row['memory_pj'] / 1e3:>10.2f} {report['ratios_vs_ternac'][d]:>9.2f}")
        if args.actions:
            for a in row["actions"]:
                say(f"{'':>16}{a['component']}: {a['action']} x{a['count']} @ {a['pj_each']:.4f} pJ ({a['note']})")
    decoder, bound = report["decoder"], report["upper_bound"]
    say(f"decoder table: {decoder['entries']} entries, {decoder['bytes']:.0f} B, "
        f"{decoder['pj_per_64_bits']:.2f} pJ per 64 bits ({decoder['basis']}); charged as an 8 KB "
        f"SRAM instead (upper bound): ternac {bound['ternac_total_pj'] / 1e3:.2f} nJ, "
        + ", ".join(f"{d} x{bound['ratios_vs_ternac'][d]:.2f}" for d in DESIGNS if d != "ternac"))
    if not args.actions:
        say("(--actions lists every count, width and assumption; --json always includes them)")
    if args.plot:
        plot_energy(report, args.plot, title=f"{args.net}: energy per inference, 45 nm")
        say(f"plot: {args.plot}")
    return report


def measured_actions(path, net_path, network, lanes):
    """The measured actions of a ``ternac sim --json`` summary of this network and configuration."""
    try:
        with open(path) as file:
            summary = json.load(file)
    except (OSError, ValueError) as error:
        raise TernacError(f"--measured {path}: cannot read a JSON summary ({error})") from None
    if not isinstance(summary, dict):
        raise TernacError(f"--measured {path}: not a `ternac sim --json` summary")
    if summary.get("heads"):
        summary = summary["heads"][0]           # the energy model charges head 0's program
    if summary.get("actions") is None or "net_sha256" not in summary:
        raise TernacError(f"--measured {path}: no measured actions (not a `ternac sim --json` "
                          f"summary of this version, or the run had no activity counters)")
    if summary["net_sha256"] != file_sha256(net_path):
        raise TernacError(f"--measured {path} was measured on another network "
                          f"({summary.get('net', '?')}), not on {net_path}")
    config = json.loads(json.dumps(lower(network, lanes=lanes).config.summary()))
    if summary.get("config") != config:
        raise TernacError(f"--measured {path} was measured on another accelerator configuration "
                          f"(lanes {summary.get('config', {}).get('lanes')}, this one {config['lanes']})")
    actions = summary["actions"]
    if isinstance(actions, list):
        raise TernacError(f"--measured {path}: the inferences measured different actions")
    if summary.get("actions_exact") is False:
        raise TernacError(f"--measured {path}: the measured actions differ from the program's "
                          f"(the RTL run failed its check: {summary.get('failed')})")
    return actions


def plot_energy(report, path, title):
    """Grouped bars (compute, memory, total) per design on a log scale, ratio to ternac on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = report["designs"]
    parts = [("compute (adds, multiplies, table reads)", "compute_pj"), ("SRAM reads and writes", "memory_pj"),
             ("total", "total_pj")]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    width = 0.27
    for j, (label, key) in enumerate(parts):
        xs = [i + (j - 1) * width for i in range(len(DESIGNS))]
        ax.bar(xs, [designs[d][key] / 1e3 for d in DESIGNS], width, label=label)
    for i, d in enumerate(DESIGNS):
        ax.text(i + width, designs[d]["total_pj"] / 1e3, f"x{report['ratios_vs_ternac'][d]:.1f}",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(DESIGNS)), DESIGNS)
    ax.set_yscale("log")
    ax.set_ylabel("nJ per inference")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
