"""On-chip buffers: the load port that fills them, and the ping-pong activation buffers."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from ternac.model.arith import ACT_BITS
from ternac.model.hw.config import ADDRESS_BITS, LOAD_BITS, Target
from ternac.model.hw.status import TARGET_VALUES, LoadError, beats_per_word

from .ecp5_bram import RegisteredBuffer

__all__ = ["ActivationBuffers", "LoadPort"]


class LoadPort(wiring.Component):
    """Decode the ``load`` stream (``model/hw/config.py``) into memory writes, rejecting bad transfers.

    Two header beats (``target << 28 | address``, then a word count) are followed by the
    words, each ``ceil(width / 32)`` beats, least significant first; the word width depends
    on the target. The port never stalls the stream: a word is written in the cycle after
    its last beat, to ``addr`` with ``we[target]`` set (both registered, so no decision of
    the port reaches a memory's write enable in the cycle it is made). ``data`` is a shift
    register that takes every beat from the top, so in that cycle a target's word is its
    last beats (:meth:`word`): neither a multiplexer nor a second register of the widest
    word aligns the beats (area: on the iCE40 each flip-flop takes a logic cell).

    A transfer whose header fails :func:`ternac.model.hw.status.check_transfer` (target not a
    memory, memory absent, ``address + count`` past the depth; decided at the count beat) is
    rejected whole: its ``count`` words of data beats (one beat per word for a target that
    is not a memory) are consumed without any write, then the port waits for the next
    header. ``error`` and ``error_code`` record the first rejection until reset, from the
    cycle after the count beat.

    Latency: a word is written in the cycle after its last beat is accepted; ``busy`` is low
    from the cycle after the last beat.

    Attributes
    ----------
    load : In(stream.Signature(32))
    busy : Out(1)
        A transfer is between its header and its last data beat.
    addr : Out(28), data : Out(32 x the most beats of a word), we : Out(4)
        Write request, one ``we`` bit per :class:`~ternac.model.hw.config.Target`; a
        target's word is :meth:`word` of ``data``.
    error : Out(1)
        Sticky: a transfer was rejected since reset.
    error_code : Out(range(len(LoadError)))
        :class:`~ternac.model.hw.status.LoadError` of the first rejected transfer.
    """

    def __init__(self, config):
        self._beats = [beats_per_word(config, t) for t in range(TARGET_VALUES)]
        self._most = max(self._beats)
        self._depths = [config.depth(t) for t in Target]
        super().__init__({
            "load": In(stream.Signature(LOAD_BITS)),
            "busy": Out(1),
            "addr": Out(ADDRESS_BITS),
            "data": Out(LOAD_BITS * max(self._beats)),
            "we": Out(len(Target)),
            "error": Out(1),
            "error_code": Out(range(len(LoadError))),
        })

    def word(self, target):
        """The word ``data`` holds for ``target`` in a write cycle: its last
        ``beats_per_word(target)`` beats, the first lowest."""
        return self.data[LOAD_BITS * (self._most - self._beats[target]):]

    def elaborate(self, platform):
        m = Module()
        most = self._most
        target = Signal(LOAD_BITS - ADDRESS_BITS)
        # The words left, counted down in two halves: the high half steps when the low one
        # wraps (`low_zero`, a register), so no 32-bit carry chain sits in one cycle (Fmax).
        half = LOAD_BITS // 2
        count_low, count_high = Signal(half), Signal(LOAD_BITS - half)
        count = Cat(count_low, count_high)
        low_zero = Signal()                             # count_low == 0
        final = Signal()                                # count == 1 (a register: Fmax)
        empty = Signal()                                # the count beat said 0 (DATA: a header)
        beat = Signal(range(most))
        last_beat = Signal(range(most))                 # beats of the transfer's words, minus 1
        word_end = Signal()                             # beat == last_beat (a register: Fmax)
        reject = Signal()                               # the transfer is rejected (DATA)
        payload = self.load.payload
        addr = Signal.like(self.addr)                   # the next word's address
        we = Signal.like(self.we)
        m.d.sync += [self.addr.eq(addr), self.we.eq(we)]
        m.d.comb += self.load.ready.eq(1)
        with m.If(self.load.valid):
            m.d.sync += self.data.eq(Cat(self.data[LOAD_BITS:], payload))

        # The header check (model/status.py: check_transfer), on the count beat. The room
        # left above the address (`depth - addr`, negative past the end) is found on the
        # header beat, so the count beat only compares (Fmax). Both are `wide` bits, enough
        # for the deepest memory: an address or count past that is out of range anyway (an
        # OR of its high bits), so the check's carry chain is no longer than a memory address.
        wide = max(self._depths).bit_length() + 1
        # Whether the words fit is registered at the count beat in two parts (`small`: the
        # count's high bits are 0; `slack`: the room minus its low bits, a subtractor, one
        # carry chain, where a compare would be mapped to a tree of LUTs) and the verdict is
        # read from registers in DATA, so nothing but the carry chain sits in the count beat's
        # cycle, and no compare in front of the write enables and the error registers (Fmax).
        # `checking` marks DATA's first cycle, when a rejection is recorded.
        code = Signal(range(len(LoadError)))
        depths = Array(Const(d, wide) for d in self._depths)
        room = Signal(signed(wide + 1))
        far = Signal()                                  # the address is past every memory
        small, checking = Signal(), Signal()
        slack = Signal(signed(wide + 2))
        fits = ~far & ~room[-1] & small & ~slack[-1]
        m.d.comb += reject.eq(code != LoadError.NONE)
        with m.If(target >= len(Target)):
            m.d.comb += code.eq(LoadError.BAD_TARGET)
        with m.Elif(depths[target[:2]] == 0):
            m.d.comb += code.eq(LoadError.NO_MEMORY)
        with m.Elif(~fits):
            m.d.comb += code.eq(LoadError.OUT_OF_RANGE)

        # What a header beat says, decoded once (the HEADER state and an empty DATA take it).
        header_target = payload[ADDRESS_BITS:]
        header_beats = Signal.like(last_beat)
        header_room = Signal.like(room)
        m.d.comb += [header_beats.eq(Array(Const(b - 1, range(most)) for b in self._beats)[header_target]),
                     header_room.eq(depths[header_target[:2]] - payload[:wide])]

        def header():
            """A header beat: the transfer's target, address, room and beats per word."""
            with m.If(self.load.valid):
                m.d.sync += [target.eq(header_target), addr.eq(payload[:ADDRESS_BITS]), room.eq(header_room),
                             far.eq(payload[wide:ADDRESS_BITS].any()), last_beat.eq(header_beats)]
                m.next = "COUNT"

        with m.FSM():
            with m.State("HEADER"):
                header()
            with m.State("COUNT"):
                # Always on to DATA: a zero count is a registered flag there, so the state does
                # not wait for a 32-bit zero test of the beat (Fmax).
                m.d.comb += self.busy.eq(1)
                with m.If(self.load.valid):
                    m.d.sync += [count.eq(payload), low_zero.eq(payload[:half] == 0), final.eq(payload == 1),
                                 empty.eq(payload == 0), beat.eq(0), word_end.eq(last_beat == 0),
                                 small.eq(~payload[wide:].any()), slack.eq(room - payload[:wide]),
                                 checking.eq(1)]
                    m.next = "DATA"
            with m.State("DATA"):
                # After a zero count the transfer is over and this beat is the next header.
                m.d.comb += self.busy.eq(~empty)
                m.d.sync += checking.eq(0)
                with m.If(checking & reject & ~self.error):
                    m.d.sync += [self.error.eq(1), self.error_code.eq(code)]
                with m.If(empty):
                    header()
                with m.Elif(self.load.valid):
                    with m.If(word_end):
                        m.d.comb += [we[t].eq((target == t) & ~reject) for t in Target]
                        m.d.sync += [addr.eq(addr + 1), count_low.eq(count_low - 1),
                                     low_zero.eq(count_low == 1), final.eq(count == 2), beat.eq(0),
                                     word_end.eq(last_beat == 0)]
                        with m.If(low_zero):
                            m.d.sync += count_high.eq(count_high - 1)
                        with m.If(final):
                            m.next = "HEADER"
                    with m.Else():
                        m.d.sync += [beat.eq(beat + 1), word_end.eq(beat + 1 == last_beat)]
        return m


class ActivationBuffers(wiring.Component):
    """Two activation buffers of ``depth`` words of N int8, used ping-pong.

    Buffer ``sel`` feeds the MAC array (``read_*``) while the requantizer writes single bytes
    into the other one (``byte_*``, a write port with 8-bit granularity), or the pooling unit
    whole words (``word_*``); that buffer also feeds ``act_out`` (``out_*``). The input stream
    writes whole words into buffer 0.

    Both buffers are in one memory, with one read and one write port: its halves (the buffer
    number is the top address bit), or, ``folded``, one memory of ``2**address_bits`` words
    holding buffer 0 from the bottom and buffer 1 from the top down (word ``i`` at ``~i``, an
    XOR with the buffer number instead of an adder: both fit when their depths add up to at
    most ``2**address_bits``, ``HardwareConfig.folded_buffers``). In either form the array reads one buffer while the other is written, and the
    output is read only once the array is done, so no pass needs more. While ``in_phase``
    (the sequencer's IDLE and INPUT states) only input words are written. That is half the
    block RAMs of two memories (4 iCE40 EBR for 2 x 128 words of 64 bits) and no read-data
    mux. ``read_data`` and ``out_data`` are the same read port, which reads every cycle
    except while ``out_stall`` (an output word waits on ``act_out``): the word holds. The
    read address is the output's while ``out_phase`` (a register: no handshake in front of
    the address, Fmax), which the array does not read in. ``out_stall`` is the stream's
    ``valid``, a register, and its ``ready``: no state decode in front of the read's enable
    (on the ECP5 the DP16KD's clock enables, far from the sequencer; Fmax).

    The write port's address, data and byte enables are registered: the handshakes and the
    requantizer's flags that choose them are a cycle away from the block RAMs' write
    enables, which sit far apart on the die (Fmax).

    ``registered``: the memory is a :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer` (on an
    ECP5 DP16KD blocks read through their output registers, ``primitive`` as there): both
    stages of the read hold while ``out_stall``.

    Latency: 1 cycle on both read ports (synchronous block-RAM reads), 2 ``registered``; a
    write is made the cycle after it is offered (``write_latency``).
    """

    def __init__(self, *, depth, n, folded=False, registered=False, primitive=None):
        self._depth = depth
        self._n = n
        self._folded = folded
        self._registered = registered
        self._primitive = primitive
        word = n * ACT_BITS
        super().__init__({
            "sel": In(1),
            "read_addr": In(range(depth)), "read_data": Out(word),
            "out_addr": In(range(depth)), "out_stall": In(1), "out_phase": In(1), "out_data": Out(word),
            "in_phase": In(1), "in_addr": In(range(depth)), "in_data": In(word), "in_en": In(1),
            "byte_addr": In(range(depth)), "byte_lane": In(range(n)), "byte_data": In(ACT_BITS),
            "byte_en": In(1),
            "word_addr": In(range(depth)), "word_data": In(word), "word_en": In(1),
        })

    @property
    def latency(self):
        return 1 + self._registered

    @property
    def write_latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        n, half = self._n, len(self.read_addr)
        depth = (1 if self._folded else 2) << half
        if self._registered:
            m.submodules.buffers = buffer = RegisteredBuffer(depth=depth, width=n * ACT_BITS, granularity=ACT_BITS,
                                                             primitive=self._primitive)
            port, rp = buffer.write, buffer.read
        else:
            m.submodules.buffers = mem = Memory(shape=n * ACT_BITS, depth=depth, init=[])
            port, rp = mem.write_port(granularity=ACT_BITS), mem.read_port()

        def word(addr, buffer):
            """Memory address of word ``addr`` of buffer ``buffer`` (a 1-bit value)."""
            return addr ^ buffer.replicate(half) if self._folded else Cat(addr, buffer)

        wp = Signal(data.StructLayout({"addr": len(port.addr), "data": len(port.data), "en": len(port.en)}))
        m.d.sync += [port.addr.eq(wp.addr), port.data.eq(wp.data), port.en.eq(wp.en)]
        m.d.comb += [
            rp.addr.eq(Mux(self.out_phase, word(self.out_addr, ~self.sel), word(self.read_addr, self.sel))),
            rp.en.eq(~self.out_stall),
            self.read_data.eq(rp.data), self.out_data.eq(rp.data),
        ]
        # One write at a time: an input word into buffer 0, or a result into buffer ~sel. The
        # input phase (a state) picks the source, so the handshake only gates the enables.
        with m.If(self.in_phase):
            m.d.comb += [wp.addr.eq(word(self.in_addr, Const(0))), wp.data.eq(self.in_data),
                         wp.en.eq(self.in_en.replicate(n))]
        with m.Elif(self.word_en):
            m.d.comb += [wp.addr.eq(word(self.word_addr, ~self.sel)), wp.data.eq(self.word_data),
                         wp.en.eq((1 << n) - 1)]
        with m.Else():
            m.d.comb += [wp.addr.eq(word(self.byte_addr, ~self.sel)),
                         wp.data.eq(self.byte_data.replicate(n)),
                         wp.en.eq(self.byte_en << self.byte_lane)]
        return m
