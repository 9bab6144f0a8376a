"""The host link: the accelerator behind a UART, driven by framed packets (``model/host/frames.py``).

One frame at a time: the link receives a whole request into its frame buffer, checks CRC,
type, length and state, and only then acts on it and answers. So a corrupted, truncated or
unknown frame changes nothing (the answer is an ERROR frame), and a frame that stops arriving
is dropped after ``timeout`` cycles without a byte.

A network load is BEGIN, LOAD frames, COMMIT. BEGIN resets the accelerator's control (its
load port may have been left mid-transfer) and marks the network unusable; each LOAD frame's
beats go to the ``load`` port once the frame's CRC checks; COMMIT carries the byte count and
the CRC-16 of every LOAD payload since BEGIN, and only when both match what arrived is the
network marked usable. INFER is refused until then: a broken transfer never runs half a
network. (A shadow copy of the weights is not possible on the iCE40UP5K: the four SPRAMs hold
one network and nothing else is large enough.)

An INFER frame's input words are fed to ``act_in`` one per cycle, from the cycle after the
core is ready (its ``act_in`` contract: ready then stays high to the last word), and
``act_out`` is always ready, so the accelerator's ``cycles`` equal the cycle model; the output
words go to the frame buffer and back to the host with the cycles. The link's control is
built from registers throughout (its states act a cycle after the event they answer): the
link runs at the accelerator's clock.

The frame buffer (:func:`frame_words` words of N bytes) is a block-RAM ``Memory`` by default;
on the iCE40UP5K it goes to the SPRAMs when it is larger than the weight buffer
(``frame_memory``, :func:`ternac.rtl.spram.spram_holds`). With ``weight_register`` (the ECP5
builds) it is a :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer`, read through the DP16KD's
output register like the accelerator's buffers: its 5.8 ns unregistered read into the
activation buffers' write register held the ECP5 link builds at 127 MHz (docs/fpga.md).
"""

# ruff: noqa: SIM117 (Amaranth: one `with` block per FSM state and per condition)
import struct

from amaranth.hdl import (
    Array,
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Module,
    Mux,
    Signal,
)
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, WritePort
from amaranth.lib.wiring import In, Out
from ternac.model.codebook import TernacError
from ternac.model.host.frames import (
    COMMIT_FORMAT,
    CRC_INIT,
    CRC_POLY,
    ERROR,
    SYNC,
    LinkError,
    Request,
    reply_type,
)
from ternac.model.hw import LOAD_BITS

from .ecp5_bram import RegisteredBuffer
from .uart import UartRx, UartTx

__all__ = ["HostLink", "crc16_update", "frame_words"]

#: Words of the frame buffer at least (one iCE40 EBR is 256 x 16 bit).
MIN_BUFFER_WORDS = 256


def frame_words(config):
    """Words (of N bytes) of the host link's frame buffer for ``config``: a whole input or output
    of ``act_depth`` words, and at least :data:`MIN_BUFFER_WORDS` for the LOAD frames."""
    return max(config.act_depth, MIN_BUFFER_WORDS)


def _crc16_terms():
    """For each bit of the next CRC, the CRC bits (0..15) and byte bits (16..23) it XORs."""
    state = [{i} for i in range(16)]                    # CRC bit i as a set of input bits
    for i in range(8):
        state[8 + i] = state[8 + i] ^ {16 + i}          # crc ^= byte << 8
    for _ in range(8):
        top = state[15]
        state = [set()] + state[:15]                    # crc << 1
        state = [bit ^ top if (CRC_POLY >> i) & 1 else bit for i, bit in enumerate(state)]
    return [sorted(bit) for bit in state]


_CRC16_TERMS = _crc16_terms()


def crc16_update(crc, byte):
    """CRC-16/CCITT-FALSE of one more byte, as XOR logic (``model.host.frames.crc16``, unrolled)."""
    inputs = Cat(crc, byte)
    bits = []
    for terms in _CRC16_TERMS:
        value = Const(0, 1)
        for t in terms:
            value = value ^ inputs[t]
        bits.append(value)
    return Cat(*bits)


def count_down(count, last):
    """One step of a down counter and of its ``last`` flag (a register: the step after this one
    is the last), found from the count before the step: no adder in front of the flag."""
    return [count.eq(count - 1), last.eq(count == 2)]


class HostLink(wiring.Component):
    """The accelerator ``core`` behind a UART (``rx``/``tx``), speaking the host-link frames.

    Parameters
    ----------
    core : Accelerator
        Its ``sync`` domain is reset by a BEGIN frame (memories keep their contents).
    config : HardwareConfig
        The core's configuration (N, act_depth).
    divisor : int
        Clock cycles per UART bit (:func:`ternac.rtl.uart.baud_divisor`).
    timeout : int
        Cycles without a byte after which a half-received frame is dropped.
    frame_memory : callable, optional
        ``frame_memory(depth, width)`` returns the frame buffer (``depth`` =
        :func:`frame_words`, ``width`` = N*8): a component with a memory's ``read`` port
        (1-cycle read) and byte-granular ``write`` port, single-ported like
        :class:`~ternac.rtl.spram.SpramBuffer` (e.g. :func:`ternac.rtl.spram.spram_frame_memory`).
        Default: a block-RAM ``Memory`` with a read and a write port; with
        ``config.weight_register`` a :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer` (2-cycle
        read, see :attr:`read_latency`).

    The frame buffer is never read and written in the same cycle, and never read in the cycle
    after a write (when a single-ported buffer's registered write lands): bytes are written
    only in PAYLOAD and output words only in COLLECT, words are read only in ACT (word 0),
    LOAD, FEED and SEND_BUFFER, and neither of the reading states follows a writing state
    directly (PAYLOAD is followed by the two CRC bytes, COLLECT by CYCLES and the reply's
    four header bytes). With a 1-cycle ``frame_memory`` the read port is enabled only in the
    reading states (on the SPRAM: no access in the other cycles). So a single-ported buffer
    costs nothing: the protocol and the accelerator's cycles are those of the default.

    A 2-cycle read (:attr:`read_latency`, a dual-ported buffer) keeps a word ahead in the
    buffer's pipeline: ACT reads word 0 and LOAD's or FEED's first cycle word 1; while the
    core takes a word every cycle the address is two words ahead, and the pipeline holds
    (``read.en`` low) in their cycles in which the core takes none. SEND_BUFFER waits a cycle
    more for each new word. The accelerator's cycles do not change: they start at its first
    input handshake.

    Attributes
    ----------
    rx : In(1)
    tx : Out(1)
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, core, config, *, divisor, timeout, frame_memory=None):
        n = config.coding.n
        if (n * 8) % LOAD_BITS or n & (n - 1):
            raise TernacError(f"the host link needs N to be a power of two with N*8 a multiple of "
                              f"{LOAD_BITS} bits, N={n}")
        self._core = core
        self._n = n
        self._shift = n.bit_length() - 1         # x * N as a shift: no multiplier
        self._words = frame_words(config)
        self._act_depth = config.act_depth
        self._frame_buffer = None
        if frame_memory is None and config.weight_register:
            frame_memory = self._registered_buffer
        if frame_memory is not None:
            self._frame_buffer = buffer = frame_memory(self._words, 8 * n)
            if (len(buffer.write.en), len(buffer.write.data), len(buffer.read.data)) != (n, 8 * n, 8 * n):
                raise TernacError(f"the frame buffer needs {8 * n}-bit words written byte by byte "
                                  f"({n} write enables)")
            if getattr(buffer, "latency", 1) not in (1, 2):
                raise TernacError(f"the frame buffer's read must take 1 or 2 cycles, not {buffer.latency}")
        self._divisor = divisor
        self._timeout = timeout
        super().__init__()

    @staticmethod
    def _registered_buffer(depth, width):
        return RegisteredBuffer(depth=depth, width=width, granularity=8)

    @property
    def read_latency(self):
        """Cycles of a frame-buffer read: 1, or 2 through a registered buffer."""
        return getattr(self._frame_buffer, "latency", 1)

    @property
    def max_payload(self):
        """Largest payload (bytes) a request may carry: the frame buffer."""
        return self._words * self._n

    def elaborate(self, platform):
        m = Module()
        n, words = self._n, self._words
        # The core runs in its own domain on the same clock, reset by one register: high through
        # the link's reset and the cycle after it, and the cycle after a BEGIN checks. So its
        # flip-flops see a single reset net from a flip-flop, not the OR of two resets in
        # front of their logic (Fmax).
        core_reset = Signal(init=1)
        m.domains.core = core_domain = ClockDomain("core", local=True)
        m.d.comb += [core_domain.clk.eq(ClockSignal("sync")), core_domain.rst.eq(core_reset)]
        core = self._core
        m.submodules.core = DomainRenamer({"sync": "core"})(core)
        load, act_in = core.load, core.act_in
        m.submodules.uart_rx = urx = UartRx(divisor=self._divisor)
        m.submodules.uart_tx = utx = UartTx(divisor=self._divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        if self._frame_buffer is None:
            m.submodules.buffer = buffer = Memory(shape=8 * n, depth=words, init=[])
            wp = buffer.write_port(granularity=8)
            rp = buffer.read_port()
        else:
            m.submodules.buffer = buffer = self._frame_buffer
            wp, rp = buffer.write, buffer.read
        registered = self.read_latency == 2
        if registered:
            # Behind the registered read the write is registered too: it lands a cycle after a
            # state offers it, so PAYLOAD's byte enable (state, `got`, lane) is not decoded in
            # front of the DP16KD (the ECP5 link's next path, docs/fpga.md). No word is read
            # within hundreds of cycles of its write (a UART byte, or CYCLES and the header).
            port, wp = wp, WritePort.Signature(addr_width=len(wp.addr), shape=8 * n, granularity=8).create()
            m.d.sync += [port.addr.eq(wp.addr), port.data.eq(wp.data), port.en.eq(wp.en)]

        byte, got = urx.o.payload, urx.o.valid
        # One CRC engine: the received bytes, or in a reply the transmitted ones.
        crc_in, sending = Signal(8), Signal()
        kind = Signal(8)
        length = Signal(16)
        lane = Signal(range(n))                   # where the next byte goes in word `index`
        crc, frame_crc = Signal(16), Signal(16)
        too_long = Signal()
        tail = Signal(8 * struct.calcsize(COMMIT_FORMAT))   # the last payload bytes (COMMIT)
        load_crc, load_crc_next = Signal(16, init=CRC_INIT), Signal(16)
        load_bytes = Signal(32)
        bytes_carry = Signal()                    # load_bytes[:16] overflowed (LOADED, REPLY)
        committed, loading = Signal(), Signal()
        in_words, out_words = Signal(16), Signal(16)
        cycles = Signal(32)
        timer = Signal(range(self._timeout + 1))

        # The reply: header, with `with_buffer` the `remaining` bytes of the frame buffer,
        # bytes `small_at` to `small_end` - 1 of `small` (an ERROR's code and request type, or
        # the STATUS payload, whose last 4 bytes are an INFER's cycles), CRC. Rx and tx take
        # turns, so the reply runs its CRC in `crc` too.
        reply_kind = Signal(8)
        with_buffer = Signal()                    # the reply sends frame-buffer bytes (INFER)
        reply_length = Signal(16)                 # payload bytes: buffer bytes + small bytes
        error_code = Signal(8)
        status = Cat(committed, loading, Const(0, 6), Const(n, 8), Const(self.max_payload, 16), cycles)
        small = Mux(reply_kind == ERROR, Cat(error_code, kind), status)
        small_at, small_end = Signal(range(9), name="small_at"), Signal(range(9), name="small_end")
        more_small = Signal()                     # small_at != small_end, a register
        header_at = Signal(2)                     # the reply header's byte on the line
        tx_lane = Signal(range(n))
        settled = Signal(3 + self.read_latency)   # cycles since SEND_BUFFER's word last changed

        # A reply is set up in two steps: the state that answers chooses what it sends
        # (`reply`), REPLY derives the rest from those registers. Many states answer, so
        # fewer registers behind each of their conditions (Fmax).
        def reply(kind_value, *, small_bytes=(0, 0), from_buffer=False):
            return [reply_kind.eq(kind_value), small_at.eq(small_bytes[0]), small_end.eq(small_bytes[1]),
                    with_buffer.eq(from_buffer)]

        def error(code):
            return [error_code.eq(code), *reply(ERROR, small_bytes=(0, 2))]

        # One word address for the whole frame buffer: `index` is the word written (PAYLOAD,
        # COLLECT), sent (SEND_BUFFER) or shown on the read port (LOAD, FEED: its address was
        # presented the cycle before). While the core takes a word every cycle (`streaming`)
        # the read address is the next word's. So both addresses are flip-flops or a choice
        # between two on two more, whatever the state: no state decode or handshake in front
        # of the buffer's address (Fmax).
        index = Signal(range(words + 1))
        index_next = Signal(range(words + 2))     # index + 1, a register: no adder on the address
        streaming = Signal()                      # LOAD, FEED: the core takes a beat every cycle
        word_end = Signal()                       # this beat is its word's last (LOAD; always in FEED)
        collecting = Signal()                     # COLLECT: an output word is written when valid
        advance = streaming & word_end
        # `index` steps and restarts outside the FSM, on registers and the output stream's
        # valid: no state decode between those and its flip-flops (Fmax). Where bytes come or
        # go, far apart, a state asks for the step a cycle ahead (`step_soon`: PAYLOAD after a
        # word's last byte, SEND_BUFFER after its last byte is taken); every restart is asked
        # for a cycle ahead (`restart_soon`), in a state after which the address is not used
        # for a cycle (FEED's last word: the core's latency lies before its first output).
        step_soon, restart_soon = Signal(), Signal()
        m.d.sync += [step_soon.eq(0), restart_soon.eq(0)]
        with m.If(restart_soon):
            m.d.sync += [index.eq(0), index_next.eq(1)]
        with m.Elif(step_soon | advance | (collecting & core.act_out.valid)):
            m.d.sync += [index.eq(index_next), index_next.eq(index_next + 1)]
        m.d.comb += wp.addr.eq(index)
        # A 2-cycle read (the class docstring): ACT reads word 0 (`index`), LOAD's or FEED's
        # first cycle word 1 (`priming`), then each advance the word after next (`index_after`,
        # index + 2, a register), and the pipeline holds in their other cycles (`hold`).
        priming, hold = Signal(), Signal()
        if registered:
            index_after = Signal(range(words + 3))
            with m.If(restart_soon):
                m.d.sync += index_after.eq(2)
            with m.Elif(step_soon | advance | (collecting & core.act_out.valid)):
                m.d.sync += index_after.eq(index_after + 1)
            m.d.sync += priming.eq(0)
            m.d.comb += [rp.addr.eq(Mux(advance, index_after, Mux(priming, index_next, index))),
                         rp.en.eq(advance | ~hold)]
        else:
            m.d.comb += rp.addr.eq(Mux(advance, index_next, index))
        beat = Signal(range(max(1, 8 * n // LOAD_BITS)))
        # One down count for every state that counts, as they follow each other: payload bytes
        # (PAYLOAD), beats (LOAD), words (FEED, COLLECT), reply buffer bytes (SEND_BUFFER); its
        # last step a flag kept beside it (a register: no wide compare in front of the state).
        # Like `index` it steps outside the FSM: while streaming, on each output word, and a
        # cycle after a state asks (`count_soon`: a byte received or sent); a state sets a new
        # count a cycle ahead (`count_value`, loaded on `load_count`), before it is used.
        remaining = Signal(16)
        last = Signal()                           # this step is the last (remaining == 1)
        count_soon, load_count = Signal(), Signal()
        count_value, count_value_is_one = Signal(16), Signal()
        m.d.sync += [count_soon.eq(0), load_count.eq(0)]
        with m.If(load_count):
            m.d.sync += [remaining.eq(count_value), last.eq(count_value_is_one)]
        with m.Elif(count_soon | streaming | (collecting & core.act_out.valid)):
            m.d.sync += count_down(remaining, last)

        def set_count(value, is_one):
            return [load_count.eq(1), count_value.eq(value), count_value_is_one.eq(is_one)]

        # The streams' valid are registers of their own (`streaming` in LOAD, in FEED): no state
        # decode in front of the core's control (Fmax).
        beating, feeding = Signal(), Signal()
        m.d.comb += [load.valid.eq(beating), act_in.valid.eq(feeding)]
        beats_per_word = 8 * n // LOAD_BITS
        m.d.comb += [
            load.payload.eq(Array(rp.data[LOAD_BITS * j:LOAD_BITS * (j + 1)]
                                       for j in range(beats_per_word))[beat]),
            act_in.payload.eq(rp.data),
        ]

        # A byte goes into the CRC the cycle after it is received or sent (`crc_byte`,
        # `crc_step`: registers), so the CRC's XOR logic does not sit behind the choice of the
        # byte and the handshake (Fmax). Bytes are many cycles apart; the CRC is sent only once
        # its last step is done (SEND_CRC0 waits for it) and checked in CHECK, two UART bytes
        # after the payload's last.
        crc_byte, crc_step = Signal(8), Signal()
        step_crc = [crc_step.eq(1), crc_byte.eq(crc_in)]
        m.d.comb += crc_in.eq(Mux(sending, utx.i.payload, byte))
        m.d.sync += crc_step.eq(0)
        with m.If(crc_step):
            m.d.sync += crc.eq(crc16_update(crc, crc_byte))
        m.d.sync += core_reset.eq(0)
        expired = Signal()                        # timer == timeout (a register: Fmax)
        with m.If(got):
            m.d.sync += [timer.eq(0), expired.eq(0)]
        with m.Elif(~expired):
            m.d.sync += [timer.eq(timer + 1), expired.eq(timer == self._timeout - 1)]
        timed_out = expired & ~got
        # The received byte is stable from its last data bit, a bit time before `got`
        # (UartRx): its comparison with SYNC is registered, not in front of the state.
        # Likewise the length's comparisons, for LEN1 (its low byte arrived in LEN0).
        is_sync, full_is_zero, full_is_one, full_too_long = (
            Signal(name=name) for name in ("is_sync", "full_is_zero", "full_is_one", "full_too_long"))
        full = Cat(length[:8], byte)
        m.d.sync += [is_sync.eq(byte == SYNC), full_is_zero.eq(full == 0), full_is_one.eq(full == 1),
                     full_too_long.eq(full > self.max_payload)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.sync += kind.eq(0)            # a frame that stops before its type has none
                with m.If(got & is_sync):
                    m.d.sync += crc.eq(CRC_INIT)
                    m.next = "TYPE"

            def receive(field_update, next_state):
                with m.If(got):
                    m.d.sync += [*step_crc, *field_update]
                    m.next = next_state
                with m.Elif(timed_out):
                    m.next = "TIMEOUT"

            # The states that answer (TIMEOUT, ACT, LOADED, CYCLES) do so unconditionally, a
            # cycle after the event: the reply's registers have few, registered enables (Fmax).
            with m.State("TIMEOUT"):
                m.d.sync += error(LinkError.TIMEOUT)
                m.next = "REPLY"

            with m.State("TYPE"):
                receive([kind.eq(byte)], "LEN0")
            with m.State("LEN0"):
                receive([length[:8].eq(byte)], "LEN1")
            with m.State("LEN1"):
                receive([length[8:].eq(byte), *set_count(full, full_is_one), restart_soon.eq(1),
                         lane.eq(0), too_long.eq(full_too_long), load_crc_next.eq(load_crc)],
                        "CRC0")
                with m.If(got & ~full_is_zero):
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [wp.data.eq(byte.replicate(n)),
                             wp.en.eq(Mux(got & ~too_long, 1 << lane, 0))]
                receive([count_soon.eq(1),
                         tail.eq(Cat(tail[8:], byte)),
                         load_crc_next.eq(crc16_update(load_crc_next, byte)),
                         lane.eq(Mux(lane == n - 1, 0, lane + 1))],
                        "PAYLOAD")
                with m.If(got & (lane == n - 1)):
                    m.d.sync += step_soon.eq(1)
                with m.If(got & last):
                    m.next = "CRC0"
            with m.State("CRC0"):
                with m.If(got):
                    m.d.sync += frame_crc[:8].eq(byte)
                    m.next = "CRC1"
                with m.Elif(timed_out):
                    m.next = "TIMEOUT"
            with m.State("CRC1"):
                with m.If(got):
                    m.d.sync += frame_crc[8:].eq(byte)
                    m.next = "CHECK"
                with m.Elif(timed_out):
                    m.next = "TIMEOUT"

            # CHECK registers every comparison of the frame, DECIDE and ACT act on them: no
            # wide comparison sits in front of the reply's and the core's control.
            commit_bytes, commit_crc, commit_in, commit_out = (
                tail[:32], tail[32:48], tail[48:64], tail[64:80])
            crc_bad, empty, load_length_bad, commit_length_bad, infer_length_bad = (
                Signal(name=name) for name in ("crc_bad", "empty", "load_length_bad",
                                               "commit_length_bad", "infer_length_bad"))
            # A COMMIT's checks: the byte count and the CRC a byte at a time (Yosys chains a wide
            # inequality's OR through a LUT per two bits, 7 levels for 32 bits), each a register
            # updated every cycle (the payload is complete two UART bytes before CHECK), ORed
            # into `commit_bad` in CHECK (Fmax).
            expected, claimed = Cat(load_bytes, load_crc), Cat(commit_bytes, commit_crc)
            commit_checks = [Signal(name=f"commit_byte{i}_bad") for i in range(len(expected) // 8)]
            words_bad, commit_bad = Signal(name="commit_words_bad"), Signal(name="commit_bad")
            m.d.sync += [*(check.eq(expected[8 * i:8 * i + 8] != claimed[8 * i:8 * i + 8])
                           for i, check in enumerate(commit_checks)),
                         words_bad.eq((commit_in == 0) | (commit_in > self._act_depth)
                                      | (commit_out == 0) | (commit_out > self._act_depth))]
            is_kind = {r: Signal(name=f"is_{r.name.lower()}") for r in Request}
            with m.State("CHECK"):
                m.d.sync += [
                    restart_soon.eq(1),               # ACT reads word 0: INFER and LOAD start there
                    crc_bad.eq(frame_crc != crc), empty.eq(length == 0),
                    load_length_bad.eq(too_long | (length == 0) | (length[:2] != 0)),
                    commit_length_bad.eq(length != len(tail) // 8),
                    commit_bad.eq(Cat(*commit_checks, words_bad).any()),
                    infer_length_bad.eq(length != in_words << self._shift),
                    *(is_kind[r].eq(kind == r) for r in Request),
                ]
                m.next = "DECIDE"
            # DECIDE finds the frame's error code, if any (a register), ACT acts on it: the
            # priority of the checks is not in front of the reply registers.
            verdict = Signal(range(max(LinkError) + 1))
            failed = Signal()                     # verdict != 0, a register
            with m.State("DECIDE"):
                m.next = "ACT"
                m.d.sync += [verdict.eq(0), failed.eq(0)]

                def fail(code):
                    return [verdict.eq(code), failed.eq(1)]
                with m.If(crc_bad):
                    m.d.sync += fail(LinkError.CRC)
                with m.Elif(is_kind[Request.STATUS] | is_kind[Request.BEGIN]):
                    with m.If(~empty):
                        m.d.sync += fail(LinkError.LENGTH)
                with m.Elif(is_kind[Request.LOAD]):
                    with m.If(load_length_bad):
                        m.d.sync += fail(LinkError.LENGTH)
                    with m.Elif(~loading):
                        m.d.sync += fail(LinkError.STATE)
                with m.Elif(is_kind[Request.COMMIT]):
                    with m.If(commit_length_bad):
                        m.d.sync += fail(LinkError.LENGTH)
                    with m.Elif(~loading):
                        m.d.sync += fail(LinkError.STATE)
                    with m.Elif(commit_bad):
                        m.d.sync += fail(LinkError.COMMIT)
                with m.Elif(is_kind[Request.INFER]):
                    with m.If(~committed):
                        m.d.sync += fail(LinkError.STATE)
                    with m.Elif(infer_length_bad):
                        m.d.sync += fail(LinkError.LENGTH)
                with m.Else():
                    m.d.sync += fail(LinkError.TYPE)
            # ACT's answer, as one expression of registers for every frame (LOAD and INFER
            # answer again when done): an ERROR with the verdict, else the request's type with
            # STATUS's payload or none.
            with m.State("ACT"):
                infer = is_kind[Request.INFER]
                m.d.sync += [*set_count(Mux(infer, in_words, length >> 2),
                                        Mux(infer, in_words == 1, length >> 2 == 1)), beat.eq(0),
                             word_end.eq(infer | (beats_per_word == 1)),
                             error_code.eq(verdict),
                             *reply(Mux(failed, ERROR, kind | reply_type(0)),
                                    small_bytes=(0, Mux(failed, 2, Mux(is_kind[Request.STATUS], 8, 0))))]
                m.next = "REPLY"
                with m.If(failed):
                    with m.If(verdict == LinkError.COMMIT):
                        m.d.sync += loading.eq(0)
                with m.Elif(is_kind[Request.BEGIN]):
                    m.d.sync += [core_reset.eq(1), committed.eq(0), loading.eq(1), load_crc.eq(CRC_INIT),
                                 load_bytes.eq(0)]
                with m.Elif(is_kind[Request.LOAD]):
                    if registered:
                        m.d.sync += priming.eq(1)
                    m.next = "LOAD"
                with m.Elif(is_kind[Request.COMMIT]):
                    m.d.sync += [loading.eq(0), committed.eq(1), in_words.eq(commit_in),
                                 out_words.eq(commit_out)]
                with m.Elif(infer):
                    if registered:
                        m.d.sync += priming.eq(1)
                    m.next = "FEED"

            # LOAD and FEED offer their beats once the core is ready (`streaming`, a register),
            # and the core then takes one every cycle to the last: `load.ready` is `~busy`, and
            # `act_in` keeps its ready (the Accelerator's contracts). So the read address does
            # not wait for the core's handshake (Fmax); the wait costs the link a cycle, not
            # the core (its `cycles` start at the first input handshake).
            with m.State("LOAD"):
                if registered:
                    m.d.sync += hold.eq(1)
                with m.If(~streaming):
                    m.d.sync += [streaming.eq(load.ready), beating.eq(load.ready)]
                with m.Else():
                    m.d.sync += [beat.eq(Mux(beat == beats_per_word - 1, 0, beat + 1)),
                                 word_end.eq(beat == (beats_per_word - 2) % beats_per_word)]
                    with m.If(last):
                        m.d.sync += [streaming.eq(0), beating.eq(0)]
                        if registered:
                            m.d.sync += hold.eq(0)
                        m.next = "LOADED"
            # The 32-bit byte count in two 16-bit steps, LOADED's carry added in REPLY: two
            # short carry chains instead of one long one (Fmax).
            bytes_low = load_bytes[:16] + length
            with m.State("LOADED"):
                m.d.sync += [load_crc.eq(load_crc_next), load_bytes[:16].eq(bytes_low[:16]),
                             bytes_carry.eq(bytes_low[16]), reply(reply_type(Request.LOAD))]
                m.next = "REPLY"
            with m.State("FEED"):
                if registered:
                    m.d.sync += hold.eq(1)
                with m.If(~streaming):
                    m.d.sync += [streaming.eq(act_in.ready), feeding.eq(act_in.ready)]
                with m.Elif(last):
                    m.d.sync += [streaming.eq(0), feeding.eq(0), restart_soon.eq(1), collecting.eq(1),
                                 *set_count(out_words, out_words == 1)]
                    if registered:
                        m.d.sync += hold.eq(0)
                    m.next = "COLLECT"
            with m.State("COLLECT"):
                m.d.comb += [core.act_out.ready.eq(1), wp.data.eq(core.act_out.payload),
                             wp.en.eq(Mux(core.act_out.valid, (1 << n) - 1, 0))]
                with m.If(core.act_out.valid & last):
                    m.d.sync += collecting.eq(0)
                    m.next = "CYCLES"
            with m.State("CYCLES"):               # `cycles` is updated by the last handshake
                m.d.sync += [cycles.eq(core.cycles), *set_count(out_words << self._shift, 0),
                             reply(reply_type(Request.INFER), small_bytes=(4, 8), from_buffer=True)]
                m.next = "REPLY"

            # -- the reply --------------------------------------------------------------------
            header = Array([Const(SYNC, 8), reply_kind, reply_length[:8], reply_length[8:16]])

            # A state offers its byte through a register (`tx_byte`, `offered`), a cycle after
            # choosing it, and steps when it is taken: neither the byte's multiplexers nor the
            # states' conditions sit between the transmitter's flip-flops (Fmax). A byte takes
            # hundreds of cycles on the line (10 bit times); the cycle is not missed.
            # The buffer's and the small payload's next bytes are registered too (`buffer_byte`,
            # `small_byte`, from the word and the position the cycle before): a state offers
            # nothing the cycle after a byte is taken (`was_taken`), when they are not yet. The
            # buffer's word is registered whole before its byte is chosen (`buffer_word`): no
            # multiplexer after the block RAM's read (on the ECP5 its 5.8 ns clock-to-output),
            # so SEND_BUFFER waits a cycle more for a new word (`settled`).
            tx_byte, offered, was_taken = Signal(8), Signal(), Signal()
            buffer_byte, small_byte = Signal(8), Signal(8)
            buffer_word = Signal.like(rp.data, reset_less=True)
            taken = offered & utx.i.ready
            m.d.comb += [utx.i.valid.eq(offered), utx.i.payload.eq(tx_byte)]
            m.d.sync += [was_taken.eq(taken), buffer_word.eq(rp.data),
                         buffer_byte.eq(Array(buffer_word[8 * i:8 * i + 8] for i in range(n))[tx_lane]),
                         small_byte.eq(Array(small[8 * i:8 * i + 8] for i in range(8))[small_at])]

            def send(offer, payload):
                """Offer ``payload`` while ``offer``; the condition under which it is taken."""
                m.d.comb += sending.eq(1)
                m.d.sync += [tx_byte.eq(payload), offered.eq(offer & ~taken & ~was_taken)]
                return taken

            with m.State("REPLY"):
                m.d.sync += [load_bytes[16:].eq(load_bytes[16:] + bytes_carry), bytes_carry.eq(0),
                             reply_length.eq(Mux(with_buffer, count_value, 0) + small_end - small_at), header_at.eq(0),
                             restart_soon.eq(1), tx_lane.eq(0), crc.eq(CRC_INIT), settled.eq(0),
                             more_small.eq(small_at != small_end)]
                m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(send(1, header[header_at])):
                    m.d.sync += header_at.eq(header_at + 1)
                    with m.If(header_at != 0):
                        m.d.sync += step_crc
                    with m.If(header_at == 3):
                        m.next = "SEND_BUFFER"
                        with m.If(~with_buffer):
                            m.next = "SEND_SMALL"
            with m.State("SEND_BUFFER"):
                m.d.sync += settled.eq(Cat(1, settled[:-1]))
                with m.If(send(settled[-1], buffer_byte)):
                    m.d.sync += [*step_crc,
                                 count_soon.eq(1),
                                 settled.eq(0), step_soon.eq(tx_lane == n - 1),
                                 tx_lane.eq(Mux(tx_lane == n - 1, 0, tx_lane + 1))]
                    with m.If(last):
                        m.next = "SEND_SMALL"
            with m.State("SEND_SMALL"):
                with m.If(send(more_small, small_byte)):
                    m.d.sync += [*step_crc, small_at.eq(small_at + 1), more_small.eq(small_at + 1 != small_end)]
                with m.If(~more_small):
                    m.next = "SEND_CRC0"
            with m.State("SEND_CRC0"):
                with m.If(send(~crc_step, crc[:8])):
                    m.next = "SEND_CRC1"
            with m.State("SEND_CRC1"):
                with m.If(send(1, crc[8:])):
                    m.next = "IDLE"

        if self._frame_buffer is not None and self.read_latency == 1:
            # Read only in the reading states (the class docstring: none of them writes or
            # follows a write): no access to a single-ported buffer in the other cycles.
            m.d.comb += rp.en.eq(fsm.ongoing("ACT") | fsm.ongoing("LOAD") | fsm.ongoing("FEED")
                                 | fsm.ongoing("SEND_BUFFER"))
        return m
