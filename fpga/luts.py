"""LUTs of the ternary MAC array against the dense int8 baseline's, multipliers in LUTs.

``python -m ternac.fpga.luts [--family ecp5|ice40] [--net 64-64-10] [--json]``: Yosys alone
(no place and route), the same synthesis script as the board builds (``synth_ecp5 -nodsp``,
``synth_ice40`` without ``-dsp``: every multiplier in LUTs), with ``-noflatten`` so that the
cell counts come per module. For each design the core (:func:`ternac.fpga.build.make_core`,
the network baked in, every port a top-level port so nothing is optimised away) is counted
whole and by block: the MAC array is ``top.array`` with its submodules (the ternary array's
decoder table). The figure of merit is LUTs per dense-equivalent multiply-accumulate per
cycle: array LUTs / (P * N), the same P * N for both designs.

LUT counts: iCE40 ``SB_LUT4`` + ``SB_CARRY`` (a carry sits in a logic cell, usually beside a
LUT: an upper bound on logic cells); ECP5 ``LUT4`` + 2 x ``CCU2C`` (a carry cell is two LUT4
slots), as ``TRELLIS_COMB`` counts them.
"""

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from ternac.model.hw import lower

from .build import build_root, network_by_name, synthesis_prelude, tool_environment

__all__ = ["block_luts", "count", "main", "synthesize"]

#: ``ternary`` counts its decoder table as LUTs; ``ternary-bram-decoder`` has it in block RAM
#: (P/2 ECP5 DP16KD, P iCE40 EBR), as ``--decoder bram`` builds it.
DESIGNS = ("ternary", "ternary-bram-decoder", "dense-lut")
#: Blocks of the core reported on their own (module path prefixes under ``top``).
BLOCKS = ("array", "acts", "requant", "shadow", "sequencer", "loader", "pool")


def _luts(family, cells):
    if family == "ice40":
        return cells.get("SB_LUT4", 0) + cells.get("SB_CARRY", 0)
    return cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)


def synthesize(design, net, family, out):
    """Yosys ``synth_<family> -noflatten`` (multipliers in LUTs) of the core; ``stat -json``."""
    from amaranth.back import rtlil

    from .build import make_core
    dense = design == "dense-lut"
    program = lower(network_by_name(net), dense=dense)
    core = make_core("dense" if dense else "ternary", program, "bram", bake=True,
                     decoder="bram" if design == "ternary-bram-decoder" else "lut")
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(rtlil.convert(core, name="top"))
    synth = "synth_ecp5 -nodsp" if family == "ecp5" else "synth_ice40"
    script = (f"read_rtlil top.il\nhierarchy -top top\nproc\n{synthesis_prelude(family)}\n"
              f"{synth} -noflatten -top top\ntee -q -o stat.json stat -json\n")
    (out / "luts.ys").write_text(script)
    yosys = tool_environment()["YOSYS"]
    run = subprocess.run([yosys, "-q", "-l", "luts.log", "luts.ys"], cwd=out, capture_output=True, text=True,
                         check=False)
    if run.returncode:
        raise RuntimeError(f"yosys failed ({run.returncode}): {(run.stderr or run.stdout)[-500:]}")
    return json.loads((out / "stat.json").read_text()), program.config


def block_luts(stat, family):
    """LUTs per module path (``top.array`` includes ``top.array.decoder``), and the whole core."""
    # Amaranth may suffix a module name with "$<n>" to keep it unique.
    per_module = {}
    for name, info in stat["modules"].items():
        key = re.sub(r"\$\d+", "", name.lstrip("\\"))
        per_module[key] = per_module.get(key, 0) + _luts(family, info.get("num_cells_by_type", {}))
    blocks = {}
    for block in BLOCKS:
        prefix = f"top.{block}"
        names = [n for n in per_module if n == prefix or n.startswith(prefix + ".")]
        if names:
            blocks[block] = sum(per_module[n] for n in names)
    return {"core": sum(per_module.values()), "blocks": blocks, "modules": per_module}


def count(net="64-64-10", family="ecp5", root=None, say=None):
    """Both designs' LUTs, whole core and MAC array; the ratio per dense-equivalent MAC/cycle."""
    say = say or (lambda text: None)
    root = Path(root or build_root()) / "luts"
    designs = {}
    for design in DESIGNS:
        start = time.monotonic()
        stat, config = synthesize(design, net, family, root / f"{family}-{design}-{net}")
        luts = block_luts(stat, family)
        macs = config.lanes * config.coding.n
        designs[design] = {**luts, "macs_per_cycle": macs,
                           "array_luts_per_mac": round(luts["blocks"]["array"] / macs, 2),
                           "core_luts_per_mac": round(luts["core"] / macs, 2),
                           "seconds": round(time.monotonic() - start, 1)}
        say(f"{family} {design} {net}: core {luts['core']} LUT, MAC array {luts['blocks']['array']} LUT "
            f"({designs[design]['array_luts_per_mac']} per dense-equivalent MAC/cycle)")
    t, d = designs["ternary"], designs["dense-lut"]
    report = {"net": net, "family": family, "designs": designs, "date": datetime.date.today().isoformat(),
              "array_ratio": round(d["blocks"]["array"] / t["blocks"]["array"], 2),
              "core_ratio": round(d["core"] / t["core"], 2),
              "array_ratio_bram_decoder": round(
                  d["blocks"]["array"] / designs["ternary-bram-decoder"]["blocks"]["array"], 2),
              "command": f"python -m ternac.fpga.luts --family {family} --net {net}"}
    # Beside the build directories, not in one: ``build/fpga/*/report.json`` are board builds.
    (root.parent / "luts.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ternac.fpga.luts", description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    parser.add_argument("--net", default="64-64-10")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    result = count(args.net, args.family, say=say)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        say(f"MAC array: dense-lut / ternary = {result['array_ratio']}x LUTs for the same P*N "
            f"MACs/cycle; whole core {result['core_ratio']}x")
    return result


if __name__ == "__main__":
    main()
