"""``ternac run NET.tern --port /dev/ttyUSB1``: run a network on a board through the host link.

Loads the network over the UART (BEGIN, LOAD frames, COMMIT), streams the samples, reads each
output and the on-chip cycles, checks every output against the golden model and every cycle
count against the cycle model, and prints inferences per second over the link. Exit status
1 if anything differs. The same driver runs against the simulated board with
``ternac sim NET.tern --link uart``.
"""

from ..codebook import TernacError

__all__ = ["configure", "report", "run"]


def configure(parser):
    parser.add_argument("net", help="a .tern network")
    parser.add_argument("--port", required=True,
                        help="serial port of the board (e.g. /dev/ttyUSB1) or a pyserial URL")
    parser.add_argument("--baud", type=int, default=1_000_000,
                        help="baud rate the bitstream was built for (default 1000000)")
    parser.add_argument("--samples", type=int, default=20, help="inferences to run (default: 20)")
    parser.add_argument("--dataset", help="take the samples from this data set's test split "
                        "(digits, fashion-mnist, mnist5k) and report accuracy; default: random int8")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--lanes", type=int, help="accelerator lanes (default: the network's)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")


def report(args, summary, labels, say):
    """Print a driver summary (``driver.run_network``); ``"ok"`` false if it is not exact."""
    outputs, expected = summary.pop("outputs"), summary.pop("expected")
    if labels is not None:
        import numpy as np
        summary.update(dataset=args.dataset,
                       accuracy=float(np.mean(outputs.argmax(axis=1) == labels)),
                       reference_accuracy=float(np.mean(expected.argmax(axis=1) == labels)))
    say(f"bit-exact: {'yes' if summary['bit_exact'] else 'NO'} ({summary['samples']} samples, "
        f"{summary['mismatches']} values differ)")
    if summary["first_mismatch"]:
        say(f"  first mismatch: {summary['first_mismatch']}")
    say(f"cycles per inference (on chip): {summary['cycles_per_inference']}, predicted "
        f"{summary['predicted_cycles']}" + ("" if summary["cycles_exact"] else "  MISMATCH"))
    if labels is not None:
        say(f"accuracy: {100 * summary['accuracy']:.2f} % "
            f"(reference {100 * summary['reference_accuracy']:.2f} %)")
    say(f"{summary['inferences_per_s']:.1f} inferences/s over the link "
        f"(load {summary['load_bytes']} bytes in {summary['load_seconds']:.2f} s)")
    cycles = (f"cycles per inference {summary['cycles_per_inference']} differ from the predicted "
              f"{summary['predicted_cycles']}")
    failed = [what for what, ok in (
        (f"{summary['mismatches']} output values differ from the golden model", summary["bit_exact"]),
        (cycles, summary["cycles_exact"])) if not ok]
    # The command line prints the summary and exits 1 when "ok" is false (model/cli.py).
    summary.update(ok=not failed, failed="; ".join(failed) or None)
    return summary


def run(args, say):
    try:
        import serial
    except ModuleNotFoundError:
        raise TernacError("ternac run needs pyserial (pip install pyserial)") from None

    from ..datasets import network_samples
    from ..hw import lower
    from ..network import load_network
    from .driver import HostLinkDriver, run_network

    net = load_network(args.net)
    x, labels = network_samples(net, args.dataset, args.samples, args.seed)
    program = lower(net, lanes=args.lanes)
    try:
        port = serial.serial_for_url(args.port, baudrate=args.baud, timeout=0.1)
    except (serial.SerialException, ValueError) as error:
        raise TernacError(f"cannot open {args.port}: {error}") from None
    with port:
        summary = run_network(HostLinkDriver(port, timeout=args.timeout), net, program, x, say=say)
    summary.update(net=args.net, port=args.port, baud=args.baud)
    return report(args, summary, labels, say)
