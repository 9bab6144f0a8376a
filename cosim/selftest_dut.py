"""A tiny stream design that exercises the co-simulation infrastructure itself.

:class:`AddConstant` adds a constant to every beat on its way through a 2-deep FIFO, so it
has independent input and output handshakes, back-pressure, and a latency of more than one
cycle: enough to catch a stream driver or monitor that loses, duplicates or reorders beats.
"""

from amaranth.hdl import Module
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AddConstant"]


class AddConstant(wiring.Component):
    """Stream pass-through that adds ``addend`` (modulo ``2 ** width``) to every beat.

    Parameters
    ----------
    width : int
        Payload width in bits.
    addend : int
        Constant added to each payload. The self-test plants a bug by building the design
        with a different ``addend`` than the test bench expects.
    depth : int
        Depth of the FIFO between input and output.

    Members
    -------
    i : ``In(stream.Signature(width))``
        Input stream.
    o : ``Out(stream.Signature(width))``
        Output stream, ``o.payload == (i.payload + addend) % 2 ** width``.
    """

    def __init__(self, width=16, addend=1, depth=2):
        self._width = width
        self._addend = addend
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(width)),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = queue = fifo.SyncFIFOBuffered(width=self._width, depth=self._depth)
        m.d.comb += [
            queue.w_data.eq(self.i.payload + self._addend),
            queue.w_en.eq(self.i.valid),
            self.i.ready.eq(queue.w_rdy),

            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
        ]
        return m
