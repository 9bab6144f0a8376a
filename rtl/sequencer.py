"""Sequencer: runs a whole inference from the layer-descriptor table."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from ternac.model.hw.config import LOAD_BITS, Target
from ternac.model.hw.lower import POOL_MODES

from .counter import SplitCounter
from .requant import PositionLayout, advance_position

__all__ = ["Sequencer", "layer_layout"]


def layer_layout(config):
    """The descriptor word as a struct (fields of ``HardwareConfig.layer_fields``)."""
    return data.StructLayout({name: signed(width) if is_signed else width
                              for name, width, is_signed in config.layer_fields()})


class Sequencer(wiring.Component):
    """Streams the input in, walks every pass's (weight word, activation word) steps, streams the output out.

    States: ``IDLE`` (waiting for the first input word), ``INPUT`` (one input word per
    cycle into buffer 0, then a cycle for the last one's write), ``RUN`` (one step per cycle), ``SETTLE`` (``settle`` cycles until
    the pass's last bytes are written, meanwhile the next descriptor is already read) and
    ``OUTPUT`` (one output word per cycle to ``act_out``). The cycle model
    (``model/hw/cycles.py``) counts exactly these states.

    With ``config.serial_layers`` the table holds 32-bit rows and ``FETCH`` follows
    ``SETTLE``: the next descriptor, one row per cycle, shifted into ``cur`` (the table is
    not read while the pass before settles: ``cur`` is in use until its last byte is
    written). In ``IDLE`` descriptor 0 is fetched after reset, after each inference and
    after each table write (``layer_write``); ``act_in`` waits until it is complete.

    ``RUN`` is a convolution walk (``model/hw/lower.py``, ``Walk``): for each output pixel
    ``(oy, ox)``, for each lane group ``g``, for each kernel tap ``(ky, kx)`` and channel word
    ``c``: weight word ``base + g*V + v`` and activation word ``addr``. ``addr`` is kept as a
    running sum of the descriptor's increments (``origin``, ``x_step``, ``y_step``,
    ``ky_jump``), so there is no multiplier; a tap outside the input map (zero padding) reads
    word 0 and raises ``act_zero``, which zeroes that word on its way to the array. A group's
    last word waits until the shadow bank has been free for P cycles. A Linear pass is the
    walk of a 1x1 kernel over a 1x1 map.

    With ``config.fused_pool`` a pooling window's positions ``(wy, wx)`` are walked between
    the lane group and the taps: each position is one convolution output (its own window
    ``cwin`` at input coordinates ``(ciy0, cix0)``, the group's weight words from
    ``group_weight`` again), ``window_first``/``window_last`` mark the first and last, and
    only the last position's last word waits for the shadow bank.

    With ``config.avg_pool``, ``pool_counted`` marks a tap that an average pooling's divisor
    counts: one inside the map or, with the descriptor's ``count_pad``, inside the padded
    map (a ``ceil_mode`` overhang past the padding never counts).

    Parameters
    ----------
    config : HardwareConfig
    settle : int
        Cycles from a pass's last issue to the write of its last output byte.
    pool_settle, avg_settle : int
        The same for a max and an average pooling pass.
    out_latency : int
        Cycles of the activation buffers' read: 1, or 2 through a register (``OUTPUT``
        keeps both stages' words, ``cycles.output_cycles``).
    """

    def __init__(self, config, *, settle, pool_settle, avg_settle, out_latency=1):
        if out_latency not in (1, 2):
            raise ValueError(f"the output phase reads in 1 or 2 cycles, not {out_latency}")
        self._out_latency = out_latency
        self._config = config
        self._settle = settle
        self._pool_settle = pool_settle
        self._avg_settle = avg_settle
        layout = layer_layout(config)
        a = config.act_depth
        table = ({"layer_row": In(LOAD_BITS), "layer_write": In(1)} if config.serial_layers
                 else {"layer": In(layout)})
        super().__init__({
            "layer_addr": Out(range(config.depth(Target.LAYERS))), **table, "cur": Out(layout),
            "in_valid": In(1), "in_ready": Out(1), "in_addr": Out(range(a)), "in_en": Out(1),
            "in_phase": Out(1),
            "out_valid": Out(1), "out_ready": In(1), "out_addr": Out(range(a)), "out_en": Out(1),
            "out_phase": Out(1),
            "sel": Out(1),
            "issue": Out(1), "first": Out(1), "last": Out(1),
            "position": Out(PositionLayout(config.max_outputs + config.lanes, config.coding.n)),
            "weight_addr": Out(range(config.weight_depth)), "act_addr": Out(range(a)),
            "act_zero": Out(1), "pool_word": Out(range(a)), "pool_counted": Out(1),
            "window_first": Out(1), "window_last": Out(1),
            "load_busy": In(1), "load_valid": In(1),
            "busy": Out(1), "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        lanes, cur = cfg.lanes, self.cur
        a = cfg.act_depth
        v = Signal(range(a + 1))
        last_word = Signal()            # v is the group's last word (a register: Fmax)
        penult = Signal(signed(len(cur.words) + 1))     # words - 2: v + 1 is the last word at v == penult
        group = Signal.like(cur.groups)
        last_group = Signal()           # group == the last group (a register: Fmax)
        penult_group = Signal(signed(len(cur.groups) + 1))  # groups - 2: group + 1 is the last at group == penult_group
        since = Signal(range(lanes + 1), init=lanes)     # cycles since a group's last word issued
        drained = Signal(init=1)        # since == lanes (a register: Fmax)
        count = Signal(range(a + 1))
        input_last = Signal()           # INPUT: count is the last input word (a register: Fmax)
        input_penult = Signal(signed(len(cur.in_words) + 1))    # in_words - 2
        settle = Signal(range(max(1, self._settle, self._avg_settle)))
        settle_last = Signal()
        m.submodules.counter = counter = SplitCounter(width=len(self.cycles), init=1)
        unread = Signal()               # OUTPUT: count < out_words (a register: Fmax)
        staged = Signal()               # OUTPUT, out_latency 2: a word in the read's first stage
        unsent = Signal(range(a + 1))   # output words after the one on act_out (counts down:
        sent_last = Signal()            # no adder in front of the registered last-word flag)
        primed = Signal()               # descriptor 0 has been read since reset
        m.d.sync += primed.eq(1)
        # Input is taken when no load beat is offered and, the two cycles before, no load
        # transfer was under way and no beat offered (registers: the handshake does not wait
        # for the load port's state, and a descriptor just written has reached `ahead`,
        # below; `status.LOAD_TO_INPUT`).
        quiet, may_start = Signal(), Signal()
        idle_load = primed & ~self.load_busy & ~self.load_valid
        m.d.sync += [quiet.eq(idle_load), may_start.eq(quiet & idle_load)]

        # A row-serial layer table: `cur` is the rows fetched so far; `arriving` is the
        # descriptor complete with the row on `layer_row` (the last of its rows). The table
        # address runs one row ahead of the row on `layer_row`, so a row arrives every cycle.
        serial, rows = cfg.serial_layers, cfg.layer_rows
        if serial:
            fetched = Signal(rows * LOAD_BITS)
            row = Signal(range(rows))                   # the row on layer_row
            streaming = Signal()                        # layer_row holds row `row`
            complete = Signal()                         # (IDLE) descriptor 0 is in `cur`
            arriving = data.View(layer_layout(cfg),
                                 Cat(fetched[LOAD_BITS:], self.layer_row)[:cfg.descriptor_bits])
            last_row = cfg.depth(Target.LAYERS) - 1
            next_row_addr = Mux(self.layer_addr == last_row, 0, self.layer_addr + 1)
            m.d.comb += cur.as_value().eq(fetched[:cfg.descriptor_bits])

            def fetch_row(when_complete):
                """Shift the row on ``layer_row`` in; after the descriptor's last, ``when_complete``."""
                m.d.sync += fetched.eq(Cat(fetched[LOAD_BITS:], self.layer_row))
                with m.If(row == rows - 1):
                    m.d.sync += [row.eq(0), *when_complete]
                with m.Else():
                    m.d.sync += [row.eq(row + 1), self.layer_addr.eq(next_row_addr)]

        walk = cfg.conv_walk
        # Each loop bound minus one (the counter's last value), registered with the
        # descriptor, so that no subtractor sits in front of a loop's comparison.
        bounds = ["words", "groups", "out_words"]
        if walk:
            bounds += ["channel_words", "kernel_w", "out_w", "out_h"]
        if cfg.fused_pool:
            bounds += ["window_w", "window_h"]
        limit = Signal(data.StructLayout({name: len(getattr(cur, name)) for name in bounds}), name="limit")
        # What a pass's counters start from, derived from its descriptor: the bounds minus one
        # and the flags and counts that end its first group, its input and the last group.
        # With the wide table `ahead` is registered from the table's read in every cycle, so
        # no compare or subtractor sits between the table and the counters (Fmax): that read
        # holds the next descriptor from a pass's first cycle, and descriptor 0 in IDLE, for
        # more than the two cycles it takes (input waits for a table write to get there).
        # With the row-serial table it is the arriving descriptor's, as it arrives.
        ahead = Signal(data.StructLayout({
            "limit": limit.shape(), "last_word": 1, "penult": signed(len(cur.words) + 1),
            "last_group": 1, "penult_group": signed(len(cur.groups) + 1),
            "input_last": 1, "input_penult": signed(len(cur.in_words) + 1), "single_input": 1}), name="ahead")

        def derive(desc):
            return [*(getattr(ahead.limit, name).eq(getattr(desc, name) - 1) for name in bounds),
                    ahead.last_word.eq(desc.words == 1), ahead.penult.eq(desc.words - 2),
                    ahead.last_group.eq(desc.groups == 1), ahead.penult_group.eq(desc.groups - 2),
                    ahead.input_last.eq(desc.in_words == 2), ahead.input_penult.eq(desc.in_words - 2),
                    ahead.single_input.eq(desc.in_words == 1)]
        # Without the convolution walk a pass is one pixel: group g reads words 0 .. V-1.
        pool = cur.pool if walk else Const(0, 1)
        # The walk: tap (ky, kx), channel word c, output pixel (oy, ox) and its window's
        # top-left input coordinate (iy0, ix0), running activation addresses.
        c, kx, ky = (Signal(range(a + 1), name=n) for n in ("c", "kx", "ky"))
        ox, oy = Signal(range(a + 1), name="ox"), Signal(range(a + 1), name="oy")
        coord = signed(cfg.address_bits)
        iy0, ix0 = Signal(coord, name="iy0"), Signal(coord, name="ix0")
        addr, win, row_win = (Signal(coord, name=n) for n in ("addr", "win", "row_win"))
        pix_word = Signal.like(self.position.word)
        group_offset = Signal(coord)            # a max pooling's window moves to its next word
        fused = cfg.fused_pool
        if fused:
            # A fused pooling's window position, its convolution window and coordinates, and
            # the lane group's first weight word (every position reads the group's words).
            wx, wy = Signal(range(16), name="wx"), Signal(range(16), name="wy")
            cwin, ciy0, cix0 = (Signal(coord, name=n) for n in ("cwin", "ciy0", "cix0"))
            group_weight = Signal.like(self.weight_addr)
            window_first = (wx == 0) & (wy == 0)
            window_last = (wx == limit.window_w) & (wy == limit.window_h)
        else:
            cwin, ciy0, cix0, window_first, window_last = win, iy0, ix0, 1, 1

        def restart_window(window, y, x):
            """The walk goes on at the convolution window at ``window``, coordinates (y, x)."""
            m.d.sync += addr.eq(window)
            if fused:
                m.d.sync += [wx.eq(0), wy.eq(0), cwin.eq(window), ciy0.eq(y), cix0.eq(x)]

        def start_layer(desc):
            loads = [] if serial else [cur.eq(desc)]
            loads += [v.eq(0), last_word.eq(ahead.last_word), penult.eq(ahead.penult), group.eq(0),
                      last_group.eq(ahead.last_group), penult_group.eq(ahead.penult_group),
                      input_last.eq(ahead.input_last), input_penult.eq(ahead.input_penult),
                      self.position.eq(0), self.weight_addr.eq(desc.weight_base), limit.eq(ahead.limit)]
            if not walk:
                return loads
            fused_start = [wx.eq(0), wy.eq(0), cwin.eq(desc.origin), ciy0.eq(-desc.pad_y),
                           cix0.eq(-desc.pad_x), group_weight.eq(desc.weight_base)] if fused else []
            return [*loads, c.eq(0), kx.eq(0), ky.eq(0), ox.eq(0), oy.eq(0), pix_word.eq(0),
                    group_offset.eq(0), iy0.eq(-desc.pad_y), ix0.eq(-desc.pad_x),
                    addr.eq(desc.origin), win.eq(desc.origin), row_win.eq(desc.origin),
                    *fused_start]

        if serial:
            m.d.comb += derive(arriving)
        else:
            m.d.sync += derive(self.layer)

        group_done = last_word & window_last
        can_issue = ~group_done | pool | drained
        m.d.comb += [self.first.eq(v == 0), self.last.eq(last_word),
                     self.window_first.eq(window_first), self.window_last.eq(window_last)]
        if walk:
            iy, ix = ciy0 + ky, cix0 + kx
            inside = (iy >= 0) & (iy < cur.in_h) & (ix >= 0) & (ix < cur.in_w)
            m.d.comb += [self.act_addr.eq(Mux(inside, addr, 0)), self.act_zero.eq(~inside),
                         self.pool_word.eq(pix_word + group)]
        else:
            m.d.comb += self.act_addr.eq(v)
        pool_settle = self._pool_settle - 1
        if cfg.avg_pool:
            padded = (iy < cur.in_h + cur.pad_y) & (ix < cur.in_w + cur.pad_x)
            m.d.comb += self.pool_counted.eq(Mux(cur.count_pad, padded, inside))
            pool_settle = Mux(cur.pool_mode == POOL_MODES["avg"], self._avg_settle - 1, pool_settle)
        # `busy` is "not IDLE" as a register, set and cleared with the transitions into and out
        # of IDLE: it gates the load stream in front of the load port (Fmax), and runs the
        # cycle count (1 while idle, the first input word's cycle, then one per cycle).
        m.d.comb += [counter.step.eq(self.busy), counter.restart.eq(~self.busy)]
        with m.If(~drained):
            m.d.sync += [since.eq(since + 1), drained.eq(since + 1 == lanes)]

        def next_step():
            """One issued step: the next channel word, then tap (later assignments win)."""
            m.d.sync += [self.weight_addr.eq(self.weight_addr + 1), v.eq(v + 1),
                         last_word.eq(v == penult)]
            if not walk:
                return
            m.d.sync += [c.eq(c + 1), addr.eq(addr + cur.tap_step)]
            with m.If(c == limit.channel_words):
                m.d.sync += [c.eq(0), kx.eq(kx + 1)]
                with m.If(kx == limit.kernel_w):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1), addr.eq(addr + cur.tap_step + cur.ky_jump)]

        def next_group_window():
            """The next lane group of this pixel restarts the window (a pooling's moves on)."""
            next_offset = group_offset + cur.group_step
            m.d.sync += [c.eq(0), kx.eq(0), ky.eq(0), group_offset.eq(next_offset)]
            restart_window(win + next_offset, iy0, ix0)
            if fused:
                m.d.sync += group_weight.eq(self.weight_addr + 1)

        def enter_settle(cycles):
            """To SETTLE for ``cycles + 1`` cycles (``start`` in the last one before a pass)."""
            last = cycles == 0
            m.d.sync += [settle.eq(cycles), settle_last.eq(last), start.eq(last & ~cur.last)]
            m.next = "SETTLE"

        def next_pixel():
            """The pixel is done: the next output pixel, from weight word 0; after the last, SETTLE."""
            next_word = pix_word + cur.pixel_words
            m.d.sync += [group.eq(0), last_group.eq(limit.groups == 0), group_offset.eq(0),
                         self.weight_addr.eq(cur.weight_base), pix_word.eq(next_word), self.position.index.eq(0),
                         self.position.word.eq(next_word), self.position.byte.eq(0)]
            if fused:
                m.d.sync += group_weight.eq(cur.weight_base)
            with m.If(ox == limit.out_w):
                m.d.sync += [ox.eq(0), oy.eq(oy + 1), iy0.eq(iy0 + cur.stride_y),
                             ix0.eq(-cur.pad_x), row_win.eq(row_win + cur.y_step),
                             win.eq(row_win + cur.y_step)]
                restart_window(row_win + cur.y_step, iy0 + cur.stride_y, -cur.pad_x)
                with m.If(oy == limit.out_h):
                    enter_settle(Mux(pool, pool_settle, self._settle - 1))
            with m.Else():
                m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + cur.stride_x), win.eq(win + cur.x_step)]
                restart_window(win + cur.x_step, iy0, ix0 + cur.stride_x)

        # Without the row-serial table, the next descriptor is loaded (`start_layer`) in every
        # IDLE cycle and in SETTLE's last cycle before the next pass: `start` marks those
        # cycles, a register set for the state and count the FSM goes to, so that the
        # counters' enables are one gate of registers, not a state decode (Fmax).
        start = Signal(init=1)
        m.d.sync += start.eq(0)
        if not serial:
            with m.If(start):
                m.d.sync += start_layer(self.layer)

        # `in_phase` (IDLE or INPUT) as a register, set for the state the FSM goes to: the
        # activation buffer's write multiplexers select on a flip-flop, not a state decode
        # (Fmax). The table address steps to descriptor 1 the cycle after the first input
        # word (`table_step`), not behind the handshake: it is read at the pass's end.
        # `inputting` (INPUT) is a register too: `in_ready` is a gate of registers and the
        # load stream's `valid`, no state decode, in front of the buffer's write enables.
        phase, inputting, table_step = Signal(init=1), Signal(), Signal()
        may_take = may_start & ~self.load_valid
        # `out_addr` is the count in every state (the buffers read it only while `out_phase`):
        # no state decode in front of the memory's address (Fmax).
        m.d.comb += [self.in_phase.eq(phase), self.in_addr.eq(count), self.out_addr.eq(count),
                     self.in_ready.eq(phase & (inputting | (may_take & complete if serial else may_take))),
                     self.in_en.eq(self.in_valid & self.in_ready)]
        m.d.sync += [phase.eq(0), inputting.eq(0), table_step.eq(0)]
        with m.If(table_step):
            m.d.sync += self.layer_addr.eq(1 % cfg.layer_depth)
        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += phase.eq(1)
                if serial:
                    # Descriptor 0 is fetched after reset, after every inference and after
                    # every write to the table (from row 0 again); input waits for it.
                    with m.If(self.layer_write):
                        m.d.sync += [complete.eq(0), streaming.eq(0), row.eq(0), self.layer_addr.eq(0)]
                    with m.Elif(~complete & streaming):
                        fetch_row([complete.eq(1), *start_layer(arriving)])
                    with m.Elif(~complete):
                        m.d.sync += [streaming.eq(1), self.layer_addr.eq(next_row_addr)]
                else:
                    # Descriptor 0 and the counts are loaded on every idle cycle (`start`),
                    # not on the first input word: only the state and the table address wait
                    # for the handshake (Fmax).
                    m.d.sync += start.eq(~self.in_en)
                with m.If(self.in_en):
                    m.d.sync += [self.busy.eq(1), count.eq(1), inputting.eq(1)]
                    if not serial:
                        m.d.sync += table_step.eq(1)
                    m.next = "INPUT"
                    with m.If(cur.in_words == 1 if serial else ahead.single_input):
                        m.d.sync += [phase.eq(0), inputting.eq(0)]
            with m.State("INPUT"):
                with m.If(inputting):
                    m.d.sync += [phase.eq(1), inputting.eq(1)]
                    with m.If(self.in_valid):
                        m.d.sync += [count.eq(count + 1), input_last.eq(count == input_penult)]
                        with m.If(input_last):
                            m.d.sync += [phase.eq(0), inputting.eq(0)]
                with m.Else():
                    # The last word is being written (cycles.BUFFER_WRITE); RUN reads it next.
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.issue.eq(can_issue)
                with m.If(can_issue):
                    next_step()
                    if fused:
                        with m.If(last_word & ~window_last):
                            # The next window position: the group's words again, on the next
                            # convolution output of the pooling window.
                            m.d.sync += [v.eq(0), last_word.eq(limit.words == 0), c.eq(0), kx.eq(0), ky.eq(0),
                                         self.weight_addr.eq(group_weight)]
                            with m.If(wx == limit.window_w):
                                m.d.sync += [wx.eq(0), wy.eq(wy + 1), cwin.eq(cwin + cur.win_y_jump),
                                             addr.eq(cwin + cur.win_y_jump), cix0.eq(ix0),
                                             ciy0.eq(ciy0 + cur.win_stride_y)]
                            with m.Else():
                                m.d.sync += [wx.eq(wx + 1), cwin.eq(cwin + cur.win_x_step),
                                             addr.eq(cwin + cur.win_x_step),
                                             cix0.eq(cix0 + cur.win_stride_x)]
                    with m.If(group_done):
                        m.d.sync += [v.eq(0), last_word.eq(limit.words == 0), group.eq(group + 1),
                                     last_group.eq(group == penult_group),
                                     *advance_position(self.position, lanes, cfg.coding.n)]
                        with m.If(~pool):
                            m.d.sync += [since.eq(1), drained.eq(lanes == 1)]
                        if walk:
                            next_group_window()
                        with m.If(last_group):
                            if walk:
                                next_pixel()
                            else:
                                enter_settle(Const(self._settle - 1))
            with m.State("SETTLE"):
                m.d.sync += [settle.eq(settle - 1), settle_last.eq(settle == 1),
                             start.eq((settle == 1) & ~cur.last)]
                with m.If(settle_last):
                    with m.If(cur.last):
                        # Descriptor 0 is read again long before the next inference.
                        m.d.sync += [count.eq(0), unread.eq(cur.out_words != 0),
                                     unsent.eq(limit.out_words), sent_last.eq(limit.out_words == 0),
                                     self.layer_addr.eq(0), self.out_phase.eq(1)]
                        m.next = "OUTPUT"
                    with m.Else():
                        if serial:
                            m.d.sync += [row.eq(0), self.layer_addr.eq(next_row_addr)]
                            m.next = "FETCH"
                        else:
                            m.d.sync += [self.sel.eq(~self.sel), self.layer_addr.eq(self.layer_addr + 1)]
                            m.next = "RUN"
            if serial:
                with m.State("FETCH"):
                    # The next descriptor, one row per cycle (cycles.fetch_cycles).
                    fetch_row([*start_layer(arriving), self.sel.eq(~self.sel)])
                    with m.If(row == rows - 1):
                        m.next = "RUN"
            with m.State("OUTPUT"):
                # out_valid marks that the read port holds the next word; read on when it is
                # taken. Through a registered read, `staged` marks a word in its first stage:
                # both stages move on together.
                m.d.comb += self.out_en.eq(~self.out_valid | self.out_ready)
                with m.If(self.out_en):
                    if self._out_latency == 2:
                        m.d.sync += [staged.eq(unread), self.out_valid.eq(staged)]
                    else:
                        m.d.sync += self.out_valid.eq(unread)
                    with m.If(unread):
                        m.d.sync += [count.eq(count + 1), unread.eq(count != limit.out_words)]
                with m.If(self.out_valid & self.out_ready):
                    m.d.sync += [unsent.eq(unsent - 1), sent_last.eq(unsent == 1)]
                    with m.If(sent_last):
                        m.d.sync += [self.cycles.eq(counter.successor), self.out_valid.eq(0),
                                     self.out_phase.eq(0),
                                     self.sel.eq(0), self.busy.eq(0), phase.eq(1), count.eq(0),
                                     start.eq(1)]
                        if serial:
                            m.d.sync += [complete.eq(0), streaming.eq(0), row.eq(0)]
                        m.next = "IDLE"
        return m
