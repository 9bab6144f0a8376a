"""A block-RAM buffer with a registered read for the ECP5: ``DP16KD`` with its output register.

A DP16KD's read data leaves the block 5.8 ns after the clock (ECP5 speed 6) without its
output register, and Yosys 0.70 neither uses that register nor avoids a multiplexer between
blocks stacked in depth: the weight buffer's read into the decoder was the ECP5 builds'
critical path (11.7 ns, docs/fpga.md). Here each block holds a slice of every word, in the
widest of DP16KD's shapes (16K x 1 ... 1K x 18) still deep enough for all words, so no block
is stacked on another and no multiplexer follows the output register. The accelerator's
``weight_register`` builds keep their weights, activations and parameters in such buffers.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2
from amaranth.vendor import LatticePlatform
from ternac.model.codebook import TernacError

from .pipeline import delayed, kept_copies

__all__ = ["DP16KD_SHAPES", "RegisteredBuffer", "dp16kd_init", "dp16kd_shape", "dp16kd_simulation_model",
           "ecp5_platform", "registered_weight_memory", "verilog_bus"]

#: DP16KD's shapes, narrowest word first: (bits per word, words).
DP16KD_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024))
#: INITVAL_00 .. INITVAL_3F: 64 parameters of 16 rows of 18 bits at a 20-bit stride.
_INIT_PARAMS, _ROWS_PER_PARAM = 64, 16


def ecp5_platform(platform):
    """Whether ``platform`` builds for an ECP5: where the primitives of this module and of
    :mod:`.ecp5_dsp` are instantiated by default."""
    return isinstance(platform, LatticePlatform) and platform.family == "ecp5"


def dp16kd_shape(depth):
    """``(bits, words)``: the widest DP16KD shape with at least ``depth`` words."""
    for bits, words in reversed(DP16KD_SHAPES):
        if words >= depth:
            return bits, words
    raise TernacError(f"a DP16KD holds at most {DP16KD_SHAPES[0][1]} words, not {depth}")


def dp16kd_init(column, bits):
    """The ``INITVAL_xx`` parameters of a block holding ``column`` (words of ``bits``).

    The block is 1024 rows of 18 bits. A 9- or 18-bit word takes ``18 // bits`` to a row; a
    1-, 2- or 4-bit word takes ``16 // bits`` to a row, around the ninth bit (bit 8), which
    those shapes do not use: the layout Yosys' own DP16KD mapping writes (checked against it
    in ``tests/test_ecp5_primitives.py``)."""
    rows = [0] * (_INIT_PARAMS * _ROWS_PER_PARAM)
    per_row = 18 // bits if bits >= 9 else 16 // bits
    for address, word in enumerate(column):
        offset = (address % per_row) * bits
        for k in range(bits):
            position = offset + k
            if bits < 9 and position >= 8:
                position += 1
            rows[address // per_row] |= ((word >> k) & 1) << position
    params = {}
    for p in range(_INIT_PARAMS):
        value = 0
        for i in range(_ROWS_PER_PARAM):
            value |= rows[p * _ROWS_PER_PARAM + i] << (20 * i)
        params[f"p_INITVAL_{p:02X}"] = Const(value, 320)
    return params


class RegisteredBuffer(wiring.Component):
    """A ``depth`` x ``width`` buffer whose read is registered twice: address, then data.

    On an ECP5 (and with ``primitive=True``) it is DP16KD blocks side by side in the shape
    :func:`dp16kd_shape` picks for ``depth``, read on port A through the block's output
    register (``REGMODE_A = "OUTREG"``) and written on port B. Elsewhere it is a
    :class:`~amaranth.lib.memory.Memory` read into a register: the same cycles, so the
    simulated accelerator is the ECP5 build's.

    With a write ``granularity`` of 8 each byte lies in one block: a 9-bit shape holds one
    byte and its write enable, an 18-bit shape two behind its byte enables (``ADB0``,
    ``ADB1``), a narrower one a slice of one byte.

    A read of an address written in the same cycle may return anything (the blocks' ports are
    independent); the accelerator reads a buffer only while nothing writes that word.

    With ``address_copies`` both ports' inputs pass two registers first, the addresses and
    write enables as a tree of copies (:func:`~ternac.rtl.pipeline.kept_copies`): one per
    eight blocks, then one per block; the data twice, each block's slice. So no flip-flop
    drives pins of blocks spread over the die, and no route spans it in one cycle
    (784-256-256-10's 32 weight blocks: 6.6 ns of routing from the sequencer's address
    register, 8.5 ns from the load port's, and 7.0 ns with one level of copies; docs/fpga.md).

    Latency: 2 cycles (the block's address register, then its output register), 4 with
    ``address_copies``; ``read.en`` (default high) enables every stage, so a read with
    ``en`` low holds, like a pipeline's stall. A write is made in the cycle it is offered,
    or with ``address_copies`` two cycles later (``write_latency``).

    Parameters
    ----------
    depth, width : int
        Words and bits per word.
    init : sequence of int
        Initial contents (DP16KD ``INITVAL`` parameters on the primitive).
    granularity : int or None
        Bits per write enable: ``None`` (the whole word) or 8.
    address_copies : bool
        Two levels of registers, in copies, on both ports' inputs: two more cycles on each.
    primitive : bool or None
        ``True``: DP16KD instances; ``False``: a Memory and a register; ``None``: instances
        exactly when the platform is an ECP5.

    Attributes
    ----------
    read : Out(ReadPort.Signature(addr_width, width))
    write : Out(WritePort.Signature(addr_width, width, granularity))
    """

    def __init__(self, *, depth, width, init=(), granularity=None, address_copies=False, primitive=None):
        if granularity not in (None, 8):
            raise TernacError(f"a DP16KD buffer writes whole words or bytes, not {granularity}-bit parts")
        self._depth = depth
        self._width = width
        self._init = list(init)
        self._granularity = granularity
        self._address_copies = address_copies
        self._primitive = primitive
        self._bits, self._words = dp16kd_shape(depth)
        addr_width = ceil_log2(max(2, depth))
        super().__init__({
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=width)),
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=width, granularity=granularity)),
        })

    @property
    def latency(self):
        return 2 + 2 * self._address_copies

    @property
    def write_latency(self):
        return 2 * self._address_copies

    def _fields(self):
        """Per block, its fields ``(lo, hi, pin, enable)``: word bits ``lo:hi`` at data pin
        ``pin`` up, written with ``write.en[enable]``."""
        bits, width, grain = self._bits, self._width, self._granularity
        if grain is None or bits < 9:               # slices of ``bits``: in one byte, if bytes
            return [[(lo, min(lo + bits, width), 0, lo // grain if grain else 0)]
                    for lo in range(0, width, bits)]
        per_block = bits // 9                       # bytes at pins 0 and 9
        starts = list(range(0, width, grain))
        return [[(lo, min(lo + grain, width), 9 * j, lo // grain) for j, lo in enumerate(starts[b:b + per_block])]
                for b in range(0, len(starts), per_block)]

    @property
    def blocks(self):
        return len(self._fields())

    def _inputs(self, m, copies):
        """Per copy, the read address and the write's address, data and enables: the ports',
        or with ``address_copies`` their registers' second level (the same data in every
        copy; each block takes its own slice of it)."""
        read, write = self.read, self.write
        if not self._address_copies:
            return [(read.addr, write.addr, write.data, write.en)] * copies
        groups = -(-copies // 8)

        def tree(name, value, enable=1, reset_less=True):
            """Copies of ``value`` two registers later: one per group of 8, then one each."""
            first = kept_copies(f"{name}_group", groups, shape=len(value), reset_less=reset_less)
            second = kept_copies(name, copies, shape=len(value), reset_less=reset_less)
            with m.If(enable):
                m.d.sync += [*(f.eq(value) for f in first), *(s.eq(first[i // 8]) for i, s in enumerate(second))]
            return second

        read_addr = tree("read_addr", read.addr, read.en)
        write_addr, write_en = tree("write_addr", write.addr), tree("write_en", write.en, reset_less=False)
        write_data = delayed(m, write.data, 2, "write_data", reset_less=True)
        return [(ra, wa, write_data, we) for ra, wa, we in zip(read_addr, write_addr, write_en)]

    def _use_primitive(self, platform):
        if self._primitive is not None:
            return self._primitive
        return ecp5_platform(platform)

    def elaborate(self, platform):
        m = Module()
        if not self._use_primitive(platform):
            m.submodules.memory = mem = Memory(shape=self._width, depth=self._depth, init=self._init)
            wp, rp = mem.write_port(granularity=self._granularity), mem.read_port()
            ((read_addr, write_addr, write_data, write_en),) = self._inputs(m, 1)
            m.d.comb += [wp.addr.eq(write_addr), wp.data.eq(write_data), wp.en.eq(write_en),
                         rp.addr.eq(read_addr), rp.en.eq(self.read.en)]
            with m.If(self.read.en):
                m.d.sync += self.read.data.eq(rp.data)
            return m

        bits = self._bits
        # A word address sits above the block's byte-lane bits: bit 0 for 16K x 1, bit 4 for 1K x 18.
        shift = 14 - ceil_log2(self._words)
        for b, (fields, inputs) in enumerate(zip(self._fields(), self._inputs(m, self.blocks))):
            read_addr, write_addr = Signal(14, name=f"read_addr{b}"), Signal(14, name=f"write_addr{b}")
            m.d.comb += [read_addr.eq(inputs[0] << shift), write_addr.eq(inputs[1] << shift)]
            write_data, write_en = inputs[2:]
            data_out = Signal(18, name=f"data_out{b}")
            data_in = [Const(0)] * 18
            column = [0] * len(self._init)
            for lo, hi, pin, _ in fields:
                data_in[pin:pin + hi - lo] = list(write_data[lo:hi])
                column = [c | ((word >> lo) & ((1 << (hi - lo)) - 1)) << pin for c, word in zip(column, self._init)]
                m.d.comb += self.read.data[lo:hi].eq(data_out[pin:pin + hi - lo])
            enables = [write_en[enable] for *_, enable in fields]
            ports = {}
            for i in range(18):
                ports[f"i_DIA{i}"] = Const(0)
                ports[f"i_DIB{i}"] = data_in[i]
                ports[f"o_DOA{i}"] = data_out[i]
            for i in range(14):
                ports[f"i_ADA{i}"] = read_addr[i]
                ports[f"i_ADB{i}"] = write_addr[i]
            if bits == 18:                          # the write's byte enables: ADB0, ADB1
                ports["i_ADB0"], ports["i_ADB1"] = (enables + [Const(0)] if self._granularity
                                                    else [Const(1)] * 2)[:2]
            for i in range(3):
                ports[f"i_CSA{i}"] = ports[f"i_CSB{i}"] = Const(0)
            write_enable = Signal(name=f"write_enable{b}")
            m.d.comb += write_enable.eq(Cat(*enables).any())
            m.submodules[f"block{b}"] = Instance(
                "DP16KD",
                p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits,
                p_REGMODE_A="OUTREG", p_REGMODE_B="NOREG",
                p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
                p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_WRITEMODE_A="NORMAL", p_WRITEMODE_B="NORMAL", p_GSR="DISABLED",
                **dp16kd_init(column, bits),
                i_CLKA=ClockSignal("sync"), i_CEA=self.read.en, i_OCEA=self.read.en, i_WEA=Const(0),
                i_RSTA=Const(0),
                i_CLKB=ClockSignal("sync"), i_CEB=Const(1), i_OCEB=Const(1), i_WEB=write_enable,
                i_RSTB=Const(0),
                **ports)
        return m


def registered_weight_memory(config, init=(), *, primitive=None):
    """The accelerator's ``weight_memory`` factory for a :class:`RegisteredBuffer` with
    ``address_copies``: the weight buffer of a ``weight_register`` build, read in 3 cycles."""
    return RegisteredBuffer(depth=config.weight_depth, width=config.weight_bits, init=init,
                            address_copies=True, primitive=primitive)


def verilog_bus(name, n):
    """A Verilog concatenation of a primitive's one-bit ports ``name0`` to ``name{n-1}``,
    most significant first: its pins as one vector in a simulation model."""
    return "{" + ", ".join(f"{name}{i}" for i in reversed(range(n))) + "}"


def dp16kd_simulation_model():
    """Verilog of a DP16KD model for Verilator and Icarus: the shapes and modes
    :class:`RegisteredBuffer` uses (Yosys ships the primitive as a black box only).

    Both ports: a read (``WEx`` low) or a write (``WEx`` high, ``NORMAL``: the read data
    holds) at the clock while ``CEx``; ``REGMODE_x = "OUTREG"`` adds the output register
    (``OCEx``). ``INITVAL`` and the word layout are :func:`dp16kd_init`'s. Chip selects,
    resets, clock inversion and other write modes are not modelled; a read and a write of
    one word on the two ports in one cycle returns an undefined word on the hardware and
    the old word here. ``tests/test_ecp5_bram.py`` checks the model against Yosys' own
    DP16KD mapping of an inferred memory.
    """
    pins = ", ".join(f"{d}{p}{i}" for p in "AB" for d in ("DI", "AD", "DO")
                     for i in range(18 if d != "AD" else 14))
    controls = ", ".join(f"{c}{p}{i}" for p in "AB"
                         for c, i in (("CE", ""), ("OCE", ""), ("CLK", ""), ("WE", ""), ("RST", ""),
                                      ("CS", 2), ("CS", 1), ("CS", 0)))
    inits = "\n".join(f"    parameter [319:0] INITVAL_{p:02X} = 320'h0;" for p in range(_INIT_PARAMS))
    loads = "\n".join(f"        for (i = 0; i < 16; i = i + 1) mem[{16 * p} + i] = INITVAL_{p:02X}[20 * i +: 18];"
                      for p in range(_INIT_PARAMS))

    def port(x):
        bus = verilog_bus
        return f"""
    wire [17:0] DI{x} = {bus(f"DI{x}", 18)};
    wire [13:0] AD{x} = {bus(f"AD{x}", 14)};
    localparam W{x} = DATA_WIDTH_{x};
    localparam SHIFT{x} = W{x} == 1 ? 0 : W{x} == 2 ? 1 : W{x} == 4 ? 2 : W{x} == 9 ? 3 : 4;
    localparam PER{x} = W{x} >= 9 ? 18 / W{x} : 16 / W{x};
    reg [17:0] q{x} = 18'd0, r{x} = 18'd0;   // the bits above the shape's word stay 0
    integer k{x}, pos{x}, word{x};
    always @(posedge CLK{x}) begin
        if (CE{x}) begin
            word{x} = AD{x} >> SHIFT{x};
            for (k{x} = 0; k{x} < W{x}; k{x} = k{x} + 1) begin
                pos{x} = (word{x} % PER{x}) * W{x} + k{x};
                if (W{x} < 9 && pos{x} >= 8) pos{x} = pos{x} + 1;
                if (WE{x}) begin
                    if (W{x} != 18 || AD{x}[k{x} / 9]) mem[word{x} / PER{x}][pos{x}] <= DI{x}[k{x}];
                end else
                    q{x}[k{x}] <= mem[word{x} / PER{x}][pos{x}];
            end
        end
        if (OCE{x}) r{x} <= q{x};
    end
    assign {bus(f"DO{x}", 18)} = REGMODE_{x} == "OUTREG" ? r{x} : q{x};
"""

    return f"""// A DP16KD model for simulation: ternac.rtl.ecp5_bram.dp16kd_simulation_model().
module DP16KD({pins}, {controls});
    input {controls};
    input {", ".join(f"DI{p}{i}" for p in "AB" for i in range(18))};
    input {", ".join(f"AD{p}{i}" for p in "AB" for i in range(14))};
    output {", ".join(f"DO{p}{i}" for p in "AB" for i in range(18))};
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter GSR = "ENABLED";
{inits}
    reg [17:0] mem [0:1023];
    integer i;
    initial begin
{loads}
    end
{port("A")}{port("B")}
endmodule
"""
