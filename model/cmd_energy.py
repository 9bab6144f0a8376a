"""``ternac energy NET.tern``: the four-design energy table per inference."""

from .energy import DESIGNS, energy_report
from .network import load_network


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--lanes", type=int, help="override the network's lane count")
    parser.add_argument("--actions", action="store_true", help="list every action count")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart of compute and memory energy")


def run(args, say):
    net = load_network(args.net)
    report = energy_report(net, args.lanes)
    say(f"energy per inference, {args.net}, 45 nm (Horowitz 2014), {report['lanes']} lanes")
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
    if not args.actions:
        say("(--actions lists every count, width and assumption; --json always includes them)")
    if args.plot:
        plot_energy(report, args.plot, title=f"{args.net}: energy per inference, 45 nm")
        say(f"plot: {args.plot}")
    return report


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
