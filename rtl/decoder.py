"""Sparse decoder: a code becomes K (valid, negative, lane index) slots through a table."""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from ternac.model.codebook import TernacError

from .pipeline import kept_copies

__all__ = ["SlotLayout", "SparseDecoder", "TableWriteSignature"]


class SlotLayout(data.StructLayout):
    """One decoder slot, LSB first: lane index, negative, valid (``Codebook.slot_word``)."""

    def __init__(self, coding):
        super().__init__({"index": coding.index_bits, "negative": 1, "valid": 1})


class TableWriteSignature(wiring.Signature):
    """Write port of a writable decoder table (driven by the load port)."""

    def __init__(self, depth, table_bits):
        super().__init__({"addr": Out(range(depth)), "data": Out(table_bits), "en": Out(1)})


class SparseDecoder(wiring.Component):
    """Decode one code per lane into K slots, for P lanes at once.

    The table is a ROM holding the default codebook's ``slot_table`` (built from the golden
    model's enumeration), or a writable memory of ``depth`` entries holding several tables
    (``lower.decoder_tables``); a layer's table starts at ``base``. Entries are K slots wide:
    a codebook of smaller K (a layer of a mixed-coding network) has its upper slots invalid.
    Each lane has its own read port, so all P codes of a weight word decode in the same cycle.

    Latency: 1 cycle (synchronous table read, so it maps onto block RAM).

    Parameters
    ----------
    coding : Coding
    lanes : int
    code_bits : int
    table : list of int, optional
        ROM contents (required without ``depth``), or a writable table's initial contents
        (a network baked into the design).
    depth : int
        Entries of a writable table (0 for the ROM).
    block_ram : bool
        Ask synthesis for block RAM (Yosys' ``rom_style``/``ram_style`` attribute): one read
        port per lane, so P/2 ECP5 DP16KD or P iCE40 EBR, against a few hundred LUTs for the
        default ROM (``docs/fpga.md``). Off, the tool chooses (Yosys: LUTs for the ROM).
    copies : int
        ROM only: the registered slots in ``copies`` copies (``slot_copies``,
        :func:`~ternac.rtl.pipeline.kept_copies`), each for part of the lane's slot multiplexers.

    Attributes
    ----------
    codes : In(lanes * code_bits)
        Lane ``p``'s code at bits ``[p*code_bits, (p+1)*code_bits)``.
    base : In(range(depth))
        First table entry of the current layer (writable table only).
    slots : Out(ArrayLayout(ArrayLayout(SlotLayout, K), P))
        Slots of each lane, one cycle after ``codes``.
    slot_copies : Out(ArrayLayout(that layout, copies)), with ``copies`` > 1
        The same, in copies of their registers (copy 0 is ``slots``).
    write : In(TableWriteSignature)
        Table write port (writable table only).
    """

    def __init__(self, *, coding, lanes, code_bits, table=None, depth=0, block_ram=False, copies=1):
        if table is None and not depth:
            raise TernacError("a decoder needs a ROM table or a writable depth")
        if depth and len(table or ()) > depth:
            raise TernacError(f"{len(table)} initial decoder entries do not fit a {depth}-entry table")
        if not depth and len(table) > 1 << code_bits:
            raise TernacError(f"a {len(table)}-entry decoder table needs more than {code_bits}-bit codes")
        self._coding = coding
        self._lanes = lanes
        self._code_bits = code_bits
        self._table = table
        self._depth = depth
        if copies > 1 and (depth or block_ram):
            raise TernacError("the decoder's slots are copied for the ROM in LUTs only")
        self._block_ram = block_ram
        self._copies = copies
        slots = data.ArrayLayout(data.ArrayLayout(SlotLayout(coding), coding.k), lanes)
        members = {"codes": In(lanes * code_bits), "slots": Out(slots)}
        if copies > 1:
            members["slot_copies"] = Out(data.ArrayLayout(slots, copies))
        if depth:
            members["base"] = In(range(depth))
            members["write"] = In(TableWriteSignature(depth, coding.k * coding.slot_bits))
        super().__init__(members)

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        c = self._coding
        width = c.k * c.slot_bits
        style = "ram_style" if self._depth else "rom_style"
        attrs = {style: "block"} if self._block_ram else None
        if self._depth:
            m.submodules.table = table = Memory(shape=width, depth=self._depth, init=self._table or [],
                                                attrs=attrs)
            wp = table.write_port()
            m.d.comb += [wp.addr.eq(self.write.addr), wp.data.eq(self.write.data), wp.en.eq(self.write.en)]
        else:
            m.submodules.table = table = Memory(shape=width, depth=len(self._table), init=self._table,
                                                attrs=attrs)
        for p in range(self._lanes):
            code = self.codes[p * self._code_bits:(p + 1) * self._code_bits]
            if self._copies > 1:
                # An asynchronous read (the ROM is LUTs) into the copies' registers.
                rp = table.read_port(domain="comb")
                copies = kept_copies(f"slots{p}", self._copies, shape=len(rp.data), reset_less=True)
                m.d.sync += [c.eq(rp.data) for c in copies]
                m.d.comb += [self.slot_copies[i][p].as_value().eq(c) for i, c in enumerate(copies)]
                m.d.comb += [rp.addr.eq(code), self.slots[p].as_value().eq(copies[0])]
                continue
            rp = table.read_port()
            m.d.comb += [
                rp.addr.eq(self.base + code if self._depth else code),
                self.slots[p].as_value().eq(rp.data),
            ]
        return m
