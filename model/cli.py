"""The ``ternac`` command line.

Each subcommand lives in its own module, which defines ``configure(parser)`` and
``run(args, say) -> dict``: ``say(text)`` prints human-readable output (silenced under
``--json``), and the returned dict is the machine-readable summary printed with ``--json``.
Only the module of the command that runs is imported (``ternac info`` needs neither PyTorch
nor Amaranth), so ``ternac --help`` lists the commands from :data:`COMMANDS` alone.

Exit codes, decided here only: 0 done; 1 the command ran but its check failed (the summary
says ``"ok": false`` and why in ``"failed"``; it is still printed); 2 a :class:`TernacError`
(one line on stderr, ``{"error": ...}`` under ``--json``). Progress goes to stderr.
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
    "run": ("ternac.model.host.cmd", "run a network on a board through the UART host link, checked"),
    "fpga": ("ternac.fpga.cmd_fpga", "build the accelerator for an FPGA board; utilization and Fmax"),
    "report": ("ternac.model.cmd_report", "the design review: one HTML page (and Markdown) of a network"),
    "dse": ("ternac.model.dse.cmd", "search coding policy, widths and lanes: Pareto front of accuracy, bits, energy, cycles, LUTs"),
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


def build_parser(command=None):
    """The ``ternac`` parser; only ``command``'s module is imported, to add its arguments."""
    parser = argparse.ArgumentParser(prog="ternac", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = _load(name)
            if module is None:
                parser.error(f"command {name} is not part of this installation")
            cmd.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
            module.configure(cmd)
            cmd.set_defaults(_module=module)
    return parser


def parse_args(argv):
    """Parse a command line, importing only the named command's module."""
    command = next((word for word in argv if not word.startswith("-")), None)
    return build_parser(command if command in COMMANDS else None).parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))

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
    if summary.get("ok") is False:
        print(f"ternac {args.command}: failed: {summary.get('failed', 'see the summary')}", file=sys.stderr)
        return 1
    return 0


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main())
