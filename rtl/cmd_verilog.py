"""``ternac verilog``: the accelerator's Verilog, memory images and a manifest."""

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring
from ternac.model.arith import acc_bits
from ternac.model.codebook import Coding, TernacError
from ternac.model.hw import (
    BUFFER_WRITE,
    HardwareConfig,
    Target,
    default_table,
    lower,
    size_config,
)
from ternac.model.hw.config import INPUT_PACKINGS, LAYER_TABLES
from ternac.model.hw.cycles import drain_to_write, issue_to_latch
from ternac.model.network import load_network

from .accelerator import MEMORY_LATENCY, Accelerator
from .requant import Requantizer

__all__ = ["configure", "run", "write_verilog"]


def configure(parser):
    parser.add_argument("--net", metavar="NET.tern", help="size the accelerator for this network")
    parser.add_argument("--lanes", type=int, help="P, output neurons in parallel (default: the network's)")
    parser.add_argument("--coding", help="N,K (without --net)")
    parser.add_argument("--code-bits", type=int, help="stored code width (default: the coding's)")
    for name, what in (("weight", "weight-buffer words"), ("act", "words per activation buffer"),
                       ("param", "parameter words"), ("layer", "layer-table entries"),
                       ("codebook", "writable decoder-table entries (0: default codebook ROM)")):
        parser.add_argument(f"--{name}-depth", type=int, help=f"{what} (default: what --net needs)")
    parser.add_argument("--acc-bits", type=int, help="accumulator width (default: from the largest fan-in)")
    parser.add_argument("--dense", action="store_true", help="the dense int8 baseline instead")
    parser.add_argument("--layer-table", choices=LAYER_TABLES, default="wide",
                        help="layer descriptors one per word (default) or in 32-bit rows, read one "
                        "per cycle between passes (HardwareConfig.serial_layers)")
    parser.add_argument("--input-packing", choices=INPUT_PACKINGS, default="chip",
                        help="who packs the rows of a first convolution on few channels: a pass on "
                        "chip (default) or the host (no packing pass; HardwareConfig.tap_packing off)")
    parser.add_argument("--weight-register", action="store_true",
                        help="every block-RAM read registered, a few more cycles per pass "
                        "(HardwareConfig.weight_register; the ECP5 builds use it)")
    parser.add_argument("--bake", action="store_true",
                        help="initialise the memories with the network (no load needed)")
    parser.add_argument("--name", help="Verilog top module name (default ternac_accel / ternac_dense)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def _config(args, network):
    overrides = {key: getattr(args, f"{key}") for key in
                 ("weight_depth", "act_depth", "param_depth", "layer_depth", "codebook_depth",
                  "acc_bits", "code_bits") if getattr(args, key) is not None}
    overrides["serial_layers"] = args.layer_table == "serial"
    overrides["weight_register"] = args.weight_register
    if network is not None:
        config = size_config(network, args.lanes, dense=args.dense,
                             pack_on_host=args.input_packing == "host").replace(**overrides)
        if args.coding and Coding.parse(args.coding) != config.coding:
            raise TernacError(f"--coding {args.coding} differs from the network's {config.coding} "
                              f"(its N, the largest K of its layers)")
        return config
    missing = [flag for flag, value in (("--lanes", args.lanes), ("--coding", args.coding),
                                        ("--weight-depth", args.weight_depth)) if value is None]
    if missing:
        raise TernacError(f"without --net, give {', '.join(missing)}")
    coding = Coding.parse(args.coding)
    act = overrides.get("act_depth", 128)
    return HardwareConfig(
        lanes=args.lanes, coding=coding, code_bits=overrides.get("code_bits", coding.code_bits),
        weight_depth=args.weight_depth, act_depth=act,
        param_depth=overrides.get("param_depth", act * coding.n), layer_depth=overrides.get("layer_depth", 8),
        acc_bits=overrides.get("acc_bits", acc_bits(act * coding.n, coding)),
        codebook_depth=overrides.get("codebook_depth", 0), dense=args.dense,
        serial_layers=overrides["serial_layers"], weight_register=args.weight_register)


def _ports(dut):
    ports = [{"name": "clk", "dir": "in", "width": 1}, {"name": "rst", "dir": "in", "width": 1}]
    for path, member, value in dut.signature.flatten(dut):
        ports.append({"name": "__".join(map(str, path)), "width": len(Value.cast(value)),
                      "dir": "in" if member.flow == wiring.In else "out"})
    return ports


def _hex(path, words, width):
    digits = max(1, -(-width // 4))
    path.write_text("".join(f"{w:0{digits}x}\n" for w in words))


def write_verilog(config, out, *, program=None, bake=False, name=None):
    """Write ``<name>.v``, memory images and ``manifest.json`` to ``out``; returns the manifest.

    With ``program`` (a lowered network on ``config``) also its load stream, memory images
    and cycles; ``bake`` puts the images into the memories' initial values.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or ("ternac_dense" if config.dense else "ternac_accel")
    dut = Accelerator(config, image=program.images if bake else None)
    files = {}
    (out / f"{name}.v").write_text(verilog.convert(dut, name=name))
    files["verilog"] = f"{name}.v"
    if not config.dense and not config.codebook_depth:
        _hex(out / "decoder_rom.hex", default_table(config.coding), config.table_bits)
        files["decoder_rom"] = "decoder_rom.hex"
    manifest = {
        "top": name, "config": config.summary(), "ports": _ports(dut),
        "latency": {"memory_read": MEMORY_LATENCY, "issue_to_latch": issue_to_latch(config.weight_register),
                    "drain_to_write": drain_to_write(config.weight_register), "decoder": 1, "mac_array": 2, "shadow_bank": 1,
                    "requantizer": Requantizer(acc_bits=config.acc_bits, tag_bits=1,
                                               bias_stage=config.weight_register).latency,
                    "buffer_write": BUFFER_WRITE,
                    "layer_settle": dut.settle},
        "throughput": {"dense_equivalent_macs_per_cycle": config.lanes * config.coding.n,
                       "adders": 0 if config.dense else config.lanes * config.coding.k,
                       "multipliers": config.lanes * config.coding.n if config.dense else 0},
        "load": {"beat_bits": 32, "header": "target << 28 | address, then word count",
                 "targets": {t.name.lower(): {"id": int(t), "word_bits": config.word_bits(t),
                                              "beats_per_word": config.beats_per_word(t),
                                              "depth": config.depth(t)} for t in Target},
                 "param_fields": config.param_fields(), "layer_fields": config.layer_fields()},
        "files": files,
    }
    if program is not None:
        _hex(out / "load.hex", program.load_beats(), 32)
        files["load"] = "load.hex"
        for target, words in program.images.items():
            if words:
                _hex(out / f"{target.name.lower()}.hex", words, config.word_bits(target))
                files[target.name.lower()] = f"{target.name.lower()}.hex"
        summary = program.summary()
        manifest["network"] = {key: summary[key] for key in ("layers", "load_beats", "cycles")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def run(args, say):
    network = load_network(args.net) if args.net else None
    if args.bake and network is None:
        raise TernacError("--bake needs --net")
    config = _config(args, network)
    program = lower(network, config) if network is not None else None
    manifest = write_verilog(config, args.out, program=program, bake=args.bake, name=args.name)
    say(f"wrote {args.out}/{manifest['files']['verilog']} (top {manifest['top']}): P={config.lanes}, "
        f"coding {config.coding}, {config.weight_depth} weight words, accumulator {config.acc_bits} bits")
    if network is not None:
        c = manifest["network"]["cycles"]
        say(f"predicted {c['total']} cycles per inference, utilization {100 * c['utilization']:.1f} % "
            f"of P*N = {config.lanes * config.coding.n} MACs/cycle")
    return {"out": str(args.out), **manifest}
