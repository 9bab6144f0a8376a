"""The FPGA builds behind the DSE area model: ``python -m ternac.fpga.area_sweep [--out JSON]``.

Builds the ternary accelerator of the synthetic 64-64-10 network on the ULX3S (ECP5-85F,
7-pin harness, weights in block RAM, PLL fixed at 50 MHz: one build each) for several lane
counts P and (N, K) codings, and writes their utilization (``TRELLIS_COMB`` LUT4 slots) to
JSON. :mod:`ternac.model.dse.area` fits its linear LUT model on these numbers.
"""

import argparse
import json
import sys
from pathlib import Path

from . import build as fpga_build

#: (P, (N, K)) of every build; (8, (8, 2)) is the configuration of docs/fpga.md's table.
SWEEP = [(8, (8, 2)), (4, (8, 2)), (16, (8, 2)), (8, (8, 1)), (8, (16, 3)), (4, (16, 3)), (8, (8, 8))]
SIZES = [64, 64, 10]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/fpga/area_sweep.json")
    args = parser.parse_args(argv)
    rows = []
    for lanes, coding in SWEEP:
        name = f"64-64-10-p{lanes}-n{coding[0]}k{coding[1]}"
        fpga_build.NETWORKS[name] = (SIZES, coding, lanes)
        r = fpga_build.build("ulx3s-85f", "ternary", name, link="pins", weights="bram", pll_mhz=50,
                             say=lambda text: print(text, file=sys.stderr, flush=True))
        rows.append({"lanes": lanes, "n": coding[0], "k": coding[1], "net": "-".join(map(str, SIZES)),
                     "board": r["board"], "fits": r["fits"], "lut": r["lut"], "ff": r["ff"],
                     "ebr": r["ebr"], "dsp": r["dsp"], "fmax_mhz": r["fmax_mhz"],
                     "build_seconds": r["build_seconds"], "reason": r["reason"]})
        print(json.dumps(rows[-1]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
