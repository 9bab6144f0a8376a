"""``ternac sim NET.tern``: run a network on the simulated RTL, bit-exact against the reference.

Generates the accelerator's Verilog for the network's configuration (cached under
``build/cosim``), compiles it with Verilator or Icarus, loads the network through the
``load`` port (or bakes it in with ``--bake``), streams the samples through it with cocotb
and compares every output value with the golden model and every inference's cycle count
with the cycle model. The summary says ``"ok": false`` (exit status 1) if anything differs.
"""

import contextlib
import sys

import numpy as np
from ternac.model.codebook import TernacError
from ternac.model.datasets import network_samples
from ternac.model.hw import lower, size_config
from ternac.model.hw.config import INPUT_PACKINGS, LAYER_TABLES
from ternac.model.network import file_sha256, load_network

from .toolchain import SIMULATORS, ToolchainError


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                        help="HDL simulator (default: verilator)")
    parser.add_argument("--samples", type=int, default=20, help="inferences to run (default: 20)")
    parser.add_argument("--dataset", help="take the samples from this data set's test split "
                        "(digits, fashion-mnist, mnist5k) and report accuracy; default: random "
                        "int8 inputs, the first ones all -128, all 127, all 0 and alternating")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--lanes", type=int, help="accelerator lanes (default: the network's)")
    parser.add_argument("--layer-table", choices=LAYER_TABLES, default="wide",
                        help="layer descriptors one per word (default), or in 32-bit rows read one "
                        "per cycle between passes (as the iCE40 builds of a CNN)")
    parser.add_argument("--input-packing", choices=INPUT_PACKINGS, default="chip",
                        help="who packs the rows of a first convolution on few channels: a pass on "
                        "chip (default), or the host, which sends the input packed (as the iCE40 "
                        "builds of a CNN)")
    parser.add_argument("--bake", action="store_true",
                        help="bake the weights into the Verilog instead of loading them "
                        "through the load port (one build per network instead of per shape)")
    parser.add_argument("--stall", type=float, default=0.0, metavar="P",
                        help="probability of back-pressure on act_out and of idle cycles on "
                        "act_in per beat (outputs must not change; cycles then exceed the model)")
    parser.add_argument("--link", choices=("streams", "uart"), default="streams",
                        help="drive the accelerator's streams directly (default), or the board's "
                        "design through its UART host link with the `ternac run` driver")
    parser.add_argument("--waves", action="store_true",
                        help="record a waveform (FST; also WAVES=1) and print its path")


def _config(args, net, head):
    return size_config(net, args.lanes, head=head, serial_layers=args.layer_table == "serial",
                       pack_on_host=args.input_packing == "host")


def _one_or_all_actions(actions):
    """The measured actions of every inference: one dict if all are equal, else the list."""
    if not actions:
        return None
    return actions[0] if all(a == actions[0] for a in actions) else actions


def _one_or_all(values):
    values = [int(v) for v in values]
    return values[0] if values and len(set(values)) == 1 else values


def run(args, say):
    net = load_network(args.net)
    x, labels = network_samples(net, args.dataset, args.samples, args.seed)
    if args.link == "uart":
        from .uart_link_sim import sim_uart
        return sim_uart(args, net, _config(args, net, None), x, labels, say)
    if not net.heads:
        return _run_program(args, say, net, x, labels, None)
    # One program per output head; each is checked against its golden output.
    heads = []
    for head in range(len(net.heads)):
        say(f"head {head}:")
        heads.append(_run_program(args, say, net, x, None if head else labels, head))
    failed = [f"head {i}: {h['failed']}" for i, h in enumerate(heads) if not h["ok"]]
    return {"net": args.net, "simulator": args.simulator, "heads": heads,
            "bit_exact": all(h["bit_exact"] for h in heads),
            "cycles_exact": all(h["cycles_exact"] for h in heads),
            "ok": not failed, "failed": "; ".join(failed) or None}


def _run_program(args, say, net, x, labels, head):
    """Simulate one program (the network, or its output ``head``); its summary."""
    from tqdm import tqdm

    from .accelerator_sim import sim_network
    from .runner import CosimError

    program = lower(net, _config(args, net, head), head=head)
    config = program.config
    say(f"{args.net}: {len(x)} samples on {args.simulator}, {config.lanes} lanes, coding "
        f"{config.coding}, {config.code_bits}-bit codes"
        f"{', writable decoder table' if config.codebook_depth else ''}"
        f"{', row-serial layer table' if config.serial_layers else ''}"
        f"{', input packed by the host' if program.input_packing else ''}; weights "
        f"{'baked into the Verilog' if args.bake else 'loaded through the load port'}")
    bar = tqdm(total=len(x), desc=f"ternac sim ({args.simulator})", unit="inference",
               file=sys.stderr, disable=None)

    def progress(done):
        bar.update(done - bar.n)

    try:
        # The runner prints the waveform path on stdout: keep stdout for the JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            result = sim_network(net, x, sim=args.simulator, config=config, bake=args.bake, head=head,
                                 waves=True if args.waves else None, seed=args.seed,
                                 idle_probability=args.stall, stall_probability=args.stall,
                                 progress=progress,
                                 name=f"ternac-sim-{args.simulator}" + (f"-head{head}" if head else ""))
    except (ToolchainError, CosimError) as error:
        raise TernacError(str(error)) from None
    finally:
        bar.close()

    predicted = result.predicted
    stalled = bool(args.stall)
    cycles_ok = (len(result.measured) == result.samples
                 and result.onchip == result.measured
                 and (stalled or result.cycles_exact))
    measured_layers = [row for row in result.layer_cycles if row]
    summary = {
        "net": args.net, "simulator": args.simulator, "head": head, "samples": result.samples,
        "bit_exact": result.bit_exact, "mismatches": result.mismatches,
        "mismatched_samples": result.mismatched_samples, "first_mismatch": result.first_mismatch,
        "cycles_per_inference": _one_or_all(result.measured),
        "onchip_cycles": _one_or_all(result.onchip),
        "predicted_cycles": predicted["total"], "cycles_exact": cycles_ok,
        "layer_cycles": measured_layers[0] if measured_layers else None,
        "predicted_layer_cycles": [predicted["input"], *predicted["layers"], predicted["output"]],
        "sim_cycles_per_second": result.sim_cycles_per_second,
        "seconds_per_inference": result.seconds_per_inference,
        "sim_seconds": result.sim_seconds, "build_seconds": result.build_seconds,
        "wall_seconds": result.wall_seconds, "stall_probability": args.stall,
        "weights": "baked" if args.bake else "load port",
        "actions": _one_or_all_actions(result.actions), "modelled_actions": program.actions(),
        "actions_exact": result.actions_exact, "net_sha256": file_sha256(args.net),
        "config": config.summary(), "problems": result.problems[:10],
        "waves": str(result.waves) if result.waves else None, "log": str(result.log),
    }
    if labels is not None:
        rtl = result.outputs.argmax(axis=1)         # lowest index wins a tie, as golden_predict
        ref = result.expected.argmax(axis=1)
        summary.update(dataset=args.dataset, accuracy=float(np.mean(rtl == labels)),
                       reference_accuracy=float(np.mean(ref == labels)),
                       agreement=float(np.mean(rtl == ref)))
    else:
        summary.update(dataset=None, inputs=f"random int8, seed {args.seed}")

    say(f"bit-exact: {'yes' if result.bit_exact else 'NO'} ({result.samples} samples, "
        f"{result.mismatches} of {result.expected.size} values differ)")
    if result.first_mismatch:
        say(f"  first mismatch: {result.first_mismatch}")
    if result.error and not result.first_mismatch:
        say(f"  {result.error}")
    say(f"cycles per inference: {summary['cycles_per_inference']} measured, "
        f"{summary['onchip_cycles']} on-chip counter, {predicted['total']} predicted"
        + ("" if cycles_ok else "  MISMATCH"))
    if summary["layer_cycles"]:
        say(f"  phases (input, layers..., output): measured {summary['layer_cycles']}, "
            f"predicted {summary['predicted_layer_cycles']}")
    if labels is not None:
        say(f"accuracy on {result.samples} {args.dataset} test samples: RTL "
            f"{100 * summary['accuracy']:.2f} %, "
            f"reference {100 * summary['reference_accuracy']:.2f} %")
    say(f"simulation: {result.sim_cycles_per_second:,.0f} cycles/s, "
        f"{result.seconds_per_inference * 1e3:.2f} ms per inference "
        f"(build {result.build_seconds:.1f} s, total {result.wall_seconds:.1f} s)")
    if result.actions:
        say(f"actions per inference (activity counters): {summary['actions']}; equal to the "
            f"program's: {'yes' if result.actions_exact else 'NO'}")
    if result.waves:
        say(f"waveform: {result.waves}")
    failed = [what for what, ok in (("not bit-exact", result.bit_exact), ("not cycle-exact", cycles_ok),
                                    ("activity counters differ from the program's actions",
                                     result.actions_exact is not False)) if not ok]
    summary.update(ok=not failed, failed=(f"the RTL differs from the golden model: {' and '.join(failed)} "
                                          f"(log {result.log})" if failed else None))
    return summary
