"""The ``ternac`` command line.

Each subcommand lives in its own module, which defines ``configure(parser)`` and
``run(args, say) -> dict``: ``say(text)`` prints human-readable output (silenced under
``--json``), and the returned dict is the machine-readable summary printed with ``--json``.
Progress goes to stderr. A :class:`TernacError` becomes a one-line message and exit code 2.
"""

import argparse
import importlib
import json
import sys

from .codebook import TernacError

# name -> (module, one-line help); modules are imported only when their command runs.
COMMANDS = {
    "pack": ("ternac.model.cmd_pack", "quantize a PyTorch model and pack it into a .tern network"),
    "info": ("ternac.model.cmd_info", "layers, bits per weight, accumulator widths, predicted cycles"),
    "energy": ("ternac.model.cmd_energy", "energy per inference: fp32, int8, dense ternary, ternac"),
    "train": ("ternac.model.cmd_train", "train float, retrain ternary with the quantizer in the loop"),
    "eval": ("ternac.model.cmd_eval", "accuracy of the integer reference on a test split"),
    "accuracy": ("ternac.model.cmd_accuracy", "measure the accuracy table (docs/accuracy.md)"),
    "verilog": ("ternac.rtl.cmd_verilog", "generate the accelerator's Verilog, memory images, manifest"),
    "sim": ("ternac.cosim.cmd_sim", "run a network on the simulated RTL, bit-exact against the reference"),
    "run": ("ternac.model.host_run", "run a network on a board through the UART host link, checked"),
    "fpga": ("ternac.fpga.cmd_fpga", "build the accelerator for an FPGA board; utilization and Fmax"),
    "demo": ("ternac.model.cmd_demo", "the main job end to end on a small network"),
}


def _load(name):
    module_name, _ = COMMANDS[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise


def build_parser():
    parser = argparse.ArgumentParser(prog="ternac", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        module = _load(name)
        if module is None:
            continue
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
        module.configure(cmd)
        cmd.set_defaults(_module=module)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def say(text=""):
        if not args.json:
            print(text, flush=True)

    try:
        summary = args._module.run(args, say)
    except TernacError as error:
        if args.json:
            print(json.dumps({"error": str(error)}))
        print(f"ternac {args.command}: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, default=_jsonable))
    return 0


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main())
