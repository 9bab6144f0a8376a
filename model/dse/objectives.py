"""The objectives of a trained design point, all minimised except accuracy.

* ``integer_accuracy``: the golden integer reference on the test split (from training);
* ``code_bits``: bits of the stored weight codes (``bits.bits_per_weight``'s ``code_bits``);
* ``energy_pj``: energy per inference of the ternac design (:func:`energy.energy_report`);
* ``cycles``: exact, ``lower(network, lanes=P).cycles.total``, when the network maps onto
  today's single-coding accelerator; otherwise the same cycle formula applied per layer at
  the layer's own N (``cycles_exact`` False: the mixed-coding RTL is not built yet);
* ``luts``: the fitted area model (:mod:`.area`).
"""

from ..bits import bits_per_weight
from ..energy import energy_report
from ..hw import lower, mapping_problem
from ..hw.cycles import input_cycles, layer_cycles, output_cycles
from .area import estimate_luts
from .space import parse_coding

__all__ = ["MINIMISED", "geometry_objectives", "objectives", "per_layer_cycles"]

#: What NSGA-II minimises, in order (accuracy enters as its error).
MINIMISED = ("error", "code_bits", "energy_pj", "cycles", "luts")


def per_layer_cycles(shapes, lanes):
    """Cycles of an MLP, ``shapes`` its ``(in, out, N)`` per layer, every pass at its own
    layer's N (the cycle model's formula; for one coding what :func:`lower` counts)."""
    total = input_cycles(-(-shapes[0][0] // shapes[0][2]))
    for fan_in, fan_out, n in shapes:
        total += layer_cycles(-(-fan_in // n), -(-fan_out // lanes), lanes)
    return total + output_cycles(-(-shapes[-1][1] // shapes[-1][2]))


def geometry_objectives(point, inputs, classes):
    """Code bits, cycles and LUTs of ``point`` before training (they need only its shape)."""
    sizes = (inputs, *point.widths, classes)
    codings = [parse_coding(c) for c in point.codings]
    shapes = [(a, b, coding.n) for a, b, (coding, _) in zip(sizes, sizes[1:], codings)]
    bits = sum(b * -(-a // n) * (learned or coding.code_bits)
               for (a, b, n), (coding, learned) in zip(shapes, codings))
    return {"code_bits": bits, "cycles": per_layer_cycles(shapes, point.lanes),
            "luts": estimate_luts(codings, point.lanes)["luts"]}


def objectives(network, lanes, accuracy):
    """The objective record of ``network`` run with ``lanes`` lanes (accuracy as measured)."""
    problem = mapping_problem(network, lanes)
    layers = network.ternary_layers
    cycles = (lower(network, lanes=lanes).cycles.total if problem is None else
              per_layer_cycles([(x.in_features, x.out_features, x.coding.n) for x in layers], lanes))
    area = estimate_luts([(x.coding, x.codebook.code_bits if x.codebook.learned else None)
                          for x in layers], lanes)
    return {
        "integer_accuracy": accuracy, "error": 1.0 - accuracy,
        "code_bits": bits_per_weight(network)["code_bits"],
        "bits_per_weight": bits_per_weight(network)["codes"],
        "energy_pj": energy_report(network, lanes)["designs"]["ternac"]["total_pj"],
        "cycles": cycles, "cycles_exact": problem is None,
        "luts": area["luts"], "luts_extrapolated": area["extrapolated"],
        "rtl_mappable": problem is None, "mapping_problem": problem,
    }
