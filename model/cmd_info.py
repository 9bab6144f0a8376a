"""``ternac info NET.tern``: layers, shapes, bits per weight, accumulator widths, cycles."""

from .bits import bits_per_weight
from .codebook import TernacError
from .network import TernaryLayer, layer_kind, load_network


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--lanes", type=int, help="predict cycles for this lane count instead")


def run(args, say):
    from .hw import lower

    net = load_network(args.net)
    try:       # one program per output head (the trunk is in each)
        programs = [lower(net, lanes=args.lanes, head=h) for h in range(max(1, len(net.heads)))]
        program, problem = programs[0], None
    except TernacError as error:
        programs, program, problem = [], None, str(error)
    network_bits = bits_per_weight(net)
    bits = {row["name"]: row for row in network_bits["per_layer"]}
    passes = {d.name: (d, u) for p in programs
              for d, u in zip(p.layers, p.cycles.layer_utilization())}
    coding = sorted({str(layer.coding) for layer in net.ternary_layers})
    say(f"{args.net}: input {tuple(net.input_shape)} (scale {net.input_scale:.6g}), coding "
        f"{', '.join(coding)}" + (f", {program.config.lanes} lanes" if program else ""))
    say(f"{'layer':>10} {'kind':>8} {'in':>14} {'out':>14} {'codes b/w':>10} {'all-in b/w':>10} "
        f"{'acc bits':>8} {'cycles':>8} {'util':>6}")
    rows = []
    for head, layer in [(None, layer) for layer in net.layers] + [
            (h, layer) for h, chain in enumerate(net.heads) for layer in chain]:
        row = {"name": layer.name, "kind": layer_kind(layer), "head": head,
               "in_shape": list(layer.in_shape()), "out_shape": list(layer.out_shape())}
        line = f"{row['name']:>10} {row['kind']:>8} {tuple(row['in_shape'])!s:>14} {tuple(row['out_shape'])!s:>14} "
        if f"{layer.name}.pack" in passes:          # the packing pass before a packed-row conv
            pack, _ = passes[f"{layer.name}.pack"]
            rows.append({"name": pack.name, "kind": "pack", "head": head, "cycles": pack.cycles})
            say(f"{pack.name:>10} {'pack':>8} {tuple(row['in_shape'])!s:>14} "
                f"{(pack.walk.in_h, pack.walk.out_w)!s:>14} {'':>10} {'':>10} {'':>8} {pack.cycles:>8}")
        if isinstance(layer, TernaryLayer):
            desc, util = passes.get(layer.name, (None, None))
            row.update(codes_bpw=bits[layer.name]["codes"], all_in_bpw=bits[layer.name]["all_in"],
                       acc_bits=layer.acc_bits, relu=layer.relu, learned_codebook=layer.codebook.learned,
                       cycles=desc.cycles if desc else None, utilization=util)
            line += (f"{row['codes_bpw']:>10.4f} {row['all_in_bpw']:>10.4f} {row['acc_bits']:>8} "
                     + (f"{desc.cycles:>8} {util:>6.1%}" if desc else f"{'-':>8} {'-':>6}"))
        elif layer.name in passes:                  # a pooling pass
            desc, _ = passes[layer.name]
            row.update(cycles=desc.cycles)
            line += f"{'':>10} {'':>10} {'':>8} {desc.cycles:>8}"
        elif layer_kind(layer) == "max" and programs:   # run on the conv's accumulators
            row.update(cycles=0, fused=True)
            line += f"{'':>10} {'':>10} {'':>8} {'fused':>8}"
        rows.append(row)
        say(line + (f"  (head {head})" if head is not None else ""))
    say(f"network: {network_bits['weights']} weights, {network_bits['codes']:.4f} code bits/weight, "
        f"{network_bits['all_in']:.4f} all-in (x{network_bits['fp32_ratio']:.1f} vs fp32)")
    summary = {"net": args.net, "coding": coding, "layers": rows, "mappable": program is not None,
               "bits_per_weight": {"codes": network_bits["codes"], "all_in": network_bits["all_in"]}}
    if program is None:
        say(f"accelerator: {problem}")
        return {**summary, "reason": problem, "predicted_cycles": None, "utilization": None}
    cfg, report = program.config, program.cycles
    for p in programs:
        say(f"input stream {p.cycles.input} cycles, output stream {p.cycles.output}")
        say(f"predicted cycles per inference{'' if p.head is None else f' of head {p.head}'}: "
            f"{p.cycles.total} ({p.cycles.utilization:.1%} of {cfg.lanes}x{cfg.coding.n} "
            f"dense-equivalent MACs per cycle)")
    summary.update(lanes=cfg.lanes, code_bits=cfg.code_bits, hardware=cfg.to_dict(),
                   predicted_cycles=report.total, utilization=report.utilization,
                   cycles=report.to_dict())
    if net.heads:
        summary["heads"] = [p.cycles.to_dict() for p in programs]
    return summary
