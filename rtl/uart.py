"""A UART: 8 data bits, no parity, 1 stop bit, at ``clock / divisor`` baud.

The baud rate comes from a down-counter reloaded with a constant divisor: no multiplier, no
fractional accumulator. :func:`baud_divisor` picks the divisor and refuses a rate the clock
cannot make within 2 % (a UART tolerates about 4 % between both ends).
"""

# ruff: noqa: SIM117 (Amaranth: one `with` block per FSM state and per condition)
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.codebook import TernacError

__all__ = ["DEFAULT_BAUD", "UartRx", "UartTx", "baud_divisor"]

#: 1 Mbaud: an FT2232H (the iCEBreaker's USB bridge) makes it exactly (3 MHz / 3).
DEFAULT_BAUD = 1_000_000
#: Clock cycles per bit at least (the receiver samples the middle of a bit).
MIN_DIVISOR = 4


def baud_divisor(clock_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clock_hz``; :class:`TernacError` if off by over 2 %."""
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise TernacError(f"{baud} baud needs a clock of at least {MIN_DIVISOR * baud / 1e6:g} MHz, "
                          f"not {clock_hz / 1e6:g} MHz")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise TernacError(f"{baud} baud is {100 * error:.1f} % off at {clock_hz / 1e6:g} MHz "
                          f"(divisor {divisor}); at most 2 %")
    return divisor


class _UartComponent(wiring.Component):
    """A UART half at ``divisor`` clock cycles per bit."""

    def __init__(self, *, divisor):
        if divisor < MIN_DIVISOR:
            raise TernacError(f"UART divisor must be at least {MIN_DIVISOR}, got {divisor}")
        self._divisor = divisor
        super().__init__()



class UartTx(_UartComponent):
    """Send each byte of ``i`` on ``tx`` (idle high): start bit, 8 bits LSB first, stop bit.

    A byte accepted on ``i`` waits in a holding register (``i.ready`` is high while it is
    empty) and starts on the line the cycle after, or once the byte before it has left: so the
    line's control sees only registers, not the sender's ``valid`` logic (Fmax), and bytes
    still leave back to back. A byte takes ``10 * divisor`` cycles on the line.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        shift = Signal(9)                  # data bits, then the stop bit
        bits = Signal(range(10))           # bits still to put on the line after the current one
        count = Signal(range(self._divisor))
        bit_done = Signal()                # count == 0, a register: no compare in front of the line's control
        busy = Signal()
        held, full = Signal(8), Signal()
        m.d.comb += self.i.ready.eq(~full)
        with m.If(self.i.valid & ~full):
            m.d.sync += [held.eq(self.i.payload), full.eq(1)]
        with m.If(~busy):
            with m.If(full):
                m.d.sync += [self.tx.eq(0), shift.eq(Cat(held, 1)), bits.eq(9),
                             count.eq(self._divisor - 1), bit_done.eq(0), busy.eq(1), full.eq(0)]
        with m.Elif(~bit_done):
            m.d.sync += [count.eq(count - 1), bit_done.eq(count == 1)]
        with m.Elif(bits != 0):
            m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1), bits.eq(bits - 1),
                         count.eq(self._divisor - 1), bit_done.eq(0)]
        with m.Else():
            m.d.sync += busy.eq(0)         # the stop bit has lasted a whole bit time
        return m


class UartRx(_UartComponent):
    """Receive bytes from ``rx``: each byte is one cycle of ``o.valid`` (no back-pressure).

    Latency: ``o.valid`` rises one cycle after the middle of the stop bit. ``o.payload`` is the
    byte from the middle of its last data bit to that of the next byte's first: stable a bit
    time before ``o.valid`` (the host link registers a comparison with it ahead).

    ``rx`` passes two flip-flops first (it comes from a pin). A start bit is checked again in
    its middle (a shorter glitch is ignored), the data bits are sampled in their middles, and
    a byte whose stop bit is low is dropped with one cycle of ``framing_error``.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    framing_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        sync = Signal(2, init=0b11)
        m.d.sync += sync.eq(Cat(self.rx, sync[0]))
        line = sync[1]
        count = Signal(range(self._divisor))
        bits = Signal(range(8))
        shift = Signal(8)
        m.d.comb += self.o.payload.eq(shift)
        # valid and framing_error are registered (a strobe the cycle after the stop bit's
        # middle), so the host link's decoding starts from a flip-flop.
        m.d.sync += [self.o.valid.eq(0), self.framing_error.eq(0)]
        with m.If(count != 0):
            m.d.sync += count.eq(count - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += count.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(count == 0):
                    m.d.sync += [count.eq(self._divisor - 1), bits.eq(0)]
                    m.next = "DATA"
                    with m.If(line):
                        m.next = "IDLE"
            with m.State("DATA"):
                with m.If(count == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits.eq(bits + 1),
                                 count.eq(self._divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(count == 0):
                    m.d.sync += [self.o.valid.eq(line), self.framing_error.eq(~line)]
                    m.next = "IDLE"
        return m
