"""``ternac energy NET.tern``: the four-design energy table per inference."""

from .energy import DESIGNS, energy_report
from .network import load_network


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--lanes", type=int, help="override the network's lane count")
    parser.add_argument("--actions", action="store_true", help="list every action count")


def run(args, say):
    net = load_network(args.net)
    report = energy_report(net, args.lanes)
    say(f"energy per inference, {args.net}, 45 nm (Horowitz 2014), {report['lanes']} lanes")
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
    return report
