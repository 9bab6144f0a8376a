"""``ternac fpga``: build the accelerator for a board (open flow), report utilization and Fmax."""

import statistics
from pathlib import Path

from .build import (
    BOARDS,
    CNNS,
    DECODER_TABLES,
    DESIGNS,
    INPUT_PACKINGS,
    LAYER_TABLES,
    LINKS,
    NETWORKS,
    SEED,
    WEIGHT_MEMORIES,
    build,
    build_root,
)

__all__ = ["configure", "run"]


def configure(parser):
    parser.add_argument("--board", choices=sorted(BOARDS), default="icebreaker",
                        help="amaranth-boards target (default: icebreaker)")
    parser.add_argument("--design", choices=DESIGNS, default="ternary",
                        help="ternary accelerator or the dense int8 baseline (default: ternary)")
    parser.add_argument("--net", choices=sorted(NETWORKS) + list(CNNS), default="64-64-10",
                        help="synthetic network to size and bake in (default: 64-64-10; the CNNs, on the "
                        "Fashion-MNIST geometry or the digits one, need torch)")
    parser.add_argument("--lanes", type=int, help="lanes P (default: the network's)")
    parser.add_argument("--layer-table", choices=LAYER_TABLES,
                        help="layer descriptors one per word (flip-flops) or in 32-bit rows of block RAM, "
                        "read one row per cycle between passes (default: serial for a CNN on iCE40)")
    parser.add_argument("--input-packing", choices=INPUT_PACKINGS,
                        help="who packs the rows of a first convolution on few channels: a pass on "
                        "chip, or the host (default: the host for a CNN on iCE40)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"nextpnr seed (default {SEED})")
    parser.add_argument("--weights", choices=WEIGHT_MEMORIES,
                        help="weight buffer in block RAM or iCE40 SPRAM (default: SPRAM on iCE40)")
    parser.add_argument("--decoder", choices=DECODER_TABLES,
                        help="the ternary decoder's table in block RAM (one read port per lane) or in "
                        "LUTs (default: block RAM on iCE40, LUTs on ECP5)")
    parser.add_argument("--link", choices=LINKS,
                        help="UART host link (default for the ternary design; the host loads the "
                        "network) or the 7-pin harness (network baked in)")
    parser.add_argument("--baud", type=int, help="host link baud rate (default 1000000)")
    parser.add_argument("--pll-mhz", type=float,
                        help="PLL frequency (default: the board's goal, then at most 95 %% of the "
                        "achieved Fmax if the goal is missed)")
    parser.add_argument("--program", action="store_true",
                        help="write the bitstream to the attached board with openFPGALoader (checked "
                        "first: without a board nothing is built and the exit code is 1)")
    parser.add_argument("--seeds", metavar="S,S,...",
                        help="build once per nextpnr seed, each in build/fpga/seed-S/, and report "
                        "every seed's Fmax, their spread and the best seed's build (placement moves "
                        "Fmax by a few MHz; with --pll-mhz every seed is constrained to one clock)")
    parser.add_argument("--all", action="store_true",
                        help="every build of the report table (python -m ternac.fpga.report)")


def _line(r):
    if not r["fits"]:
        return f"{r['board']} {r['design']} {r['net']} (P={r['lanes']}): does not fit: {r['reason']}"
    return (f"{r['board']} {r['design']} {r['net']} (P={r['lanes']}, {r['layer_table']} layer table"
            f"{', input packed by the host' if r.get('input_packing') else ''}): {r['lut']} LUT, {r['ff']} FF, {r['ebr']} EBR, "
            f"{r['dsp']} DSP, {r['spram'] or 0} SPRAM; PLL {r['clock_mhz']:g} MHz, Fmax {r['fmax_mhz']:.1f} MHz "
            f"({'meets' if r['timing_pass'] else 'MISSES'} timing; "
            f"{r['inferences_per_s'] or 0:,} inferences/s at the PLL clock), built in {r['build_seconds']:.0f} s")


def _seed_list(text):
    from ternac.model.codebook import TernacError
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:
        raise TernacError(f"--seeds takes comma-separated integers (e.g. 1,2,3), got {text!r}")
    return seeds


def _build(args, say, **extra):
    return build(args.board, args.design, args.net, say=say, weights=args.weights,
                 link=args.link, baud=args.baud, pll_mhz=args.pll_mhz, decoder=args.decoder,
                 lanes=args.lanes, layer_table=args.layer_table, input_packing=args.input_packing, **extra)


def run_seeds(args, say):
    """One build per seed: the best seed's report, with every seed's figures and the spread."""
    results = []
    for seed in _seed_list(args.seeds):
        result = _build(args, say, seed=seed, root=build_root() / f"seed-{seed}")
        say(f"seed {seed}: {_line(result)}")
        results.append(result)
    seeds = [{key: r.get(key) for key in ("seed", "fits", "fmax_mhz", "clock_mhz", "timing_pass", "lut",
                                         "inferences_per_s", "build_dir")} for r in results]
    fitted = sorted((r for r in results if r["fits"] and r["fmax_mhz"]), key=lambda r: r["fmax_mhz"])
    if not fitted:
        return {**results[-1], "seeds": seeds}
    best, fmax = fitted[-1], [r["fmax_mhz"] for r in fitted]
    spread = {"min": fmax[0], "median": statistics.median(fmax), "max": fmax[-1], "best_seed": best["seed"]}
    say(f"Fmax over seeds {', '.join(str(r['seed']) for r in results)}: min {spread['min']:.1f}, "
        f"median {spread['median']:.1f}, max {spread['max']:.1f} MHz (seed {best['seed']}: {best['build_dir']})")
    return {**best, "seeds": seeds, "fmax_spread": spread}


def run(args, say):
    if args.seeds and (args.all or args.program):
        from ternac.model.codebook import TernacError
        raise TernacError("--seeds builds one design several times: not with --all or --program")
    if args.seeds:
        return run_seeds(args, say)
    if args.all:
        from .report import RUNS, run_all
        results = run_all(RUNS, say=say)
        return {"builds": results}
    if args.program:
        from .program import attached
        probe = attached(args.board)
        say(probe.message)
        if not probe.found:
            return {"ok": False, "failed": probe.message, "board": args.board, **probe.summary()}
    result = _build(args, say, seed=args.seed)
    say(_line(result))
    say(f"report: {result['build_dir']}/report.json")
    if args.program:
        if not result["fits"]:
            return {**result, "ok": False, "failed": "the design does not fit: nothing to program"}
        from .program import program
        bitstream = Path(result["build_dir"]) / ("top.bin" if result["family"] == "ice40" else "top.bit")
        outcome = program(args.board, bitstream)
        say(f"programmed {args.board} with {bitstream}" if outcome["programmed"] else
            f"openFPGALoader failed ({outcome['loader_exit']}): {outcome['loader_output'][-300:]}")
        result = {**result, **probe.summary(), **outcome, "ok": outcome["programmed"]}
        if not outcome["programmed"]:
            result["failed"] = "openFPGALoader could not program the board"
    return result
