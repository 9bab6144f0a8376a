"""``ternac info NET.tern``: layers, shapes, bits per weight, accumulator widths, cycles."""

from .bits import bits_per_weight
from .codebook import TernacError
from .network import TernaryLayer, load_network
from .pack import Geometry


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--lanes", type=int, help="predict cycles for this lane count instead")


def run(args, say):
    from .cycles import predict_cycles, utilization

    net = load_network(args.net)
    bits = {row["name"]: row for row in bits_per_weight(net)["per_layer"]}
    network_bits = bits_per_weight(net)
    try:
        geometry = Geometry.for_network(net, args.lanes)
        cycles = predict_cycles(net, geometry)
        reason = None
    except TernacError as error:            # the layers are still worth listing
        geometry = cycles = None
        reason = str(error)
    layer_cycles = dict(cycles.layers) if cycles else {}
    say(f"{args.net}: input {tuple(net.input_shape)} (scale {net.input_scale:.6g}), "
        + (f"coding {geometry.coding}, {geometry.code_bits}-bit codes, {geometry.lanes} lanes" if geometry
           else f"the accelerator cannot run it: {reason}"))
    say(f"{'layer':>10} {'kind':>8} {'in':>14} {'out':>14} {'codes b/w':>10} {'all-in b/w':>10} "
        f"{'acc bits':>8} {'cycles':>8}")
    rows = []
    for layer in net.layers:
        row = {"name": layer.name, "kind": getattr(layer, "mode", None) or (
            ("conv2d" if layer.conv else "linear") if isinstance(layer, TernaryLayer) else layer.kind),
            "in_shape": list(layer.in_shape()), "out_shape": list(layer.out_shape())}
        if isinstance(layer, TernaryLayer):
            row.update(codes_bpw=bits[layer.name]["codes"], all_in_bpw=bits[layer.name]["all_in"],
                       acc_bits=layer.acc_bits, relu=layer.relu, cycles=layer_cycles.get(layer.name),
                       learned_codebook=layer.codebook.learned)
        rows.append(row)
        say(f"{row['name']:>10} {row['kind']:>8} {tuple(row['in_shape'])!s:>14} {tuple(row['out_shape'])!s:>14} "
            + (f"{row['codes_bpw']:>10.4f} {row['all_in_bpw']:>10.4f} {row['acc_bits']:>8} {'-' if row['cycles'] is None else row['cycles']!s:>8}"
               if "acc_bits" in row else ""))
    say(f"network: {network_bits['weights']} weights, {network_bits['codes']:.4f} code bits/weight, "
        f"{network_bits['all_in']:.4f} all-in (x{network_bits['fp32_ratio']:.1f} vs fp32)")
    summary = {"net": args.net, "layers": rows, "mappable": geometry is not None, "reason": reason,
               "bits_per_weight": {"codes": network_bits["codes"], "all_in": network_bits["all_in"]}}
    if geometry is None:
        return summary
    util = utilization(net, geometry)
    say(f"predicted cycles per inference: {cycles.total} ({util:.1%} of {geometry.lanes}x{geometry.coding.n} "
        f"dense-equivalent MACs per cycle)")
    return {**summary, "coding": [geometry.coding.n, geometry.coding.k], "code_bits": geometry.code_bits,
            "lanes": geometry.lanes, "predicted_cycles": cycles.total, "utilization": util}
