"""The accelerator: runs every layer of a packed network on chip, host out of the loop."""

import functools

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from ternac.model.codebook import TernacError
from ternac.model.hw import cycles
from ternac.model.hw.config import LOAD_BITS, Target
from ternac.model.hw.lower import default_table
from ternac.model.hw.status import STATUS_BITS, STATUS_FIELDS

from .activity import ActivityCounters, ActivitySignature
from .buffers import ActivationBuffers, LoadPort
from .ecp5_bram import RegisteredBuffer, registered_weight_memory
from .mac_array import TernaryMacArray
from .pipeline import delayed
from .pooling import PoolUnit, WindowMax
from .requant import PositionLayout, Requantizer, ShadowBank
from .sequencer import Sequencer

__all__ = ["Accelerator"]

#: Cycles of a block-RAM read (weight buffer, activation buffers, parameter memory).
MEMORY_LATENCY = 1


def status_layout():
    """The status word as a struct (:data:`ternac.model.hw.status.STATUS_FIELDS`, gaps read 0)."""
    fields, offset = {}, 0
    for field in STATUS_FIELDS:
        if field.offset > offset:
            fields[f"_reserved{offset}"] = field.offset - offset
        fields[field.name] = field.width
        offset = field.offset + field.width
    fields[f"_reserved{offset}"] = STATUS_BITS - offset
    return data.StructLayout(fields)


def param_layout(config):
    """The parameter word as a struct (fields of ``HardwareConfig.param_fields``)."""
    return data.StructLayout({name: signed(width) if is_signed else unsigned(width)
                              for name, width, is_signed in config.param_fields()})


class Accelerator(wiring.Component):
    """A structured sparse ternary network accelerator (or, with ``config.dense``, its int8 baseline).

    An inference streams the first layer's input in on ``act_in`` (``ceil(I/N)`` words of N
    int8, the last zero-padded), runs every layer from the layer-descriptor table with the
    activations ping-ponging between two on-chip buffers, and streams the last layer's
    output words out on ``act_out``. Weights, parameters, descriptors and (if writable) the
    decoder table are written beforehand through ``load`` (protocol in ``model/hw/config.py``)
    or baked in with ``image``.

    Timing: the program's :class:`~ternac.model.hw.cycles.CycleReport`, exactly; ``cycles`` holds the count
    of the last inference (first ``act_in`` to last ``act_out`` handshake, both included).

    Parameters
    ----------
    config : HardwareConfig
    image : dict, optional
        Initial memory contents per :class:`~ternac.model.hw.config.Target`
        (:attr:`AcceleratorProgram.images <ternac.model.hw.lower.AcceleratorProgram>`).
    weight_memory : callable, optional
        ``weight_memory(config, init)`` returns the weight buffer: a component with a
        memory's ``read`` and ``write`` port signatures and a 1-cycle read (e.g.
        :func:`ternac.rtl.spram.spram_weight_memory`), or a longer one (``latency``) that
        takes ``weight_register`` cycles; default a block-RAM ``Memory``, and for a ternary
        ``weight_register`` design :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer` (DP16KD
        blocks through their output registers on an ECP5, behind trees of address copies).
    decoder_ram : bool
        The decoder table in block RAM (:class:`~ternac.rtl.decoder.SparseDecoder`
        ``block_ram``): the FPGA builds' choice where block RAM is left over.
    dsp : bool or None
        The requantizer's product in a MULT18X18D with its registers (:class:`Requantizer`
        ``dsp``); ``None``: on an ECP5, as the builds make it.
    bram : bool or None
        With ``config.weight_register``, the weight buffer, activation buffers and parameter
        memory are :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer` s: DP16KD instances with
        ``True``, a memory and a register with ``False``, ``None``: on an ECP5.
    activity : bool
        Add the ``activity`` port: per-inference action counters
        (:class:`~ternac.rtl.activity.ActivityCounters`) for the measured energy. Off by
        default (and in the FPGA builds); the co-simulation turns it on. Ternary arrays only.

    Attributes
    ----------
    act_in : In(stream.Signature(N*8))
        ``ready`` does not depend on ``valid`` and, once high with no ``load`` beat offered,
        stays high until the input's last word is taken: a source that waits for ``ready``
        may then send a word every cycle (the host link does). Checked by
        :func:`~ternac.rtl.simulate.run_rtl_network` on every simulated cycle.
    act_out : Out(stream.Signature(N*8))
    load : In(stream.Signature(32))
    busy : Out(1)
        An inference is in progress (``act_in`` accepted its first word, the last output
        word has not left yet). ``load`` is not accepted while busy.
    cycles : Out(32)
        Cycles of the last finished inference.
    error : Out(1)
        Sticky: a load transfer was rejected since reset (``model/status.py``).
    status : Out(8)
        The status word, fields :data:`ternac.model.hw.status.STATUS_FIELDS`.
    activity : Out(ActivitySignature), with ``activity`` only
        Counts of the last (or running) inference, one per :data:`ternac.model.hw.ACTIONS`.
    """

    def __init__(self, config, *, image=None, weight_memory=None, decoder_ram=False, activity=False, dsp=None,
                 bram=None):
        if activity and config.dense:
            raise TernacError("activity counters observe the ternary array's decoder; the dense "
                              "baseline has none")
        self._config = config
        self._image = image or {}
        self._weight_memory = weight_memory
        self._activity = activity
        self._decoder_ram = decoder_ram
        self._dsp = dsp
        self._bram = bram
        word = config.act_bits
        members = {
            "act_in": In(stream.Signature(word)),
            "act_out": Out(stream.Signature(word)),
            "load": In(stream.Signature(LOAD_BITS)),
            "busy": Out(1),
            "cycles": Out(32),
            "error": Out(1),
            "status": Out(status_layout()),
        }
        if activity:
            members["activity"] = Out(ActivitySignature())
        super().__init__(members)
        self._position = PositionLayout(config.max_outputs + config.lanes, config.coding.n)
        # The parameter memory's address, as wide as the shadow bank's ``read_start``.
        self._param_bits = Shape.cast(range(config.depth(Target.PARAMS))).width

    @classmethod
    def for_program(cls, program):
        """An accelerator with a lowered network baked into its memories."""
        return cls(program.config, image=program.images)

    @property
    def config(self):
        return self._config

    @property
    def settle(self):
        """Cycles from a layer's last issued step to the write of its last output byte."""
        registered = self._config.weight_register
        return cycles.issue_to_latch(registered) + self._config.lanes + cycles.drain_to_write(registered)

    @property
    def array_tag_bits(self):
        """Bits of the tag a word carries through the MAC array to its latch: the output
        position, its parameters' address and, with fused pooling, the window's first/last."""
        return self._position.size + self._param_bits + 2 * self._config.fused_pool

    def _make_array(self):
        cfg = self._config
        tag_bits = self.array_tag_bits
        if cfg.dense:
            from .dense_baseline import DenseMacArray
            return DenseMacArray(lanes=cfg.lanes, n=cfg.coding.n, acc_bits=cfg.acc_bits, tag_bits=tag_bits)
        return TernaryMacArray(lanes=cfg.lanes, coding=cfg.coding, code_bits=cfg.code_bits,
                               acc_bits=cfg.acc_bits, tag_bits=tag_bits,
                               table=(self._image.get(Target.CODEBOOK, []) if cfg.codebook_depth
                                      else default_table(cfg.coding)),
                               codebook_depth=cfg.codebook_depth, table_ram=self._decoder_ram,
                               fanout_copies=cfg.weight_register)

    def _memory(self, m, name, target):
        cfg = self._config
        mem = Memory(shape=cfg.word_bits(target), depth=cfg.depth(target), init=self._image.get(target, []))
        m.submodules[name] = mem
        return mem

    def _weight_ports(self, m, array_read):
        """Write and read port of the weight buffer, and its read latency: 1, or up to
        ``array_read`` for a buffer whose read takes ``weight_register`` cycles itself (the
        default buffer of a ternary ``weight_register`` design, 4 cycles:
        :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer` with ``address_copies``; the dense
        baseline's 512-bit words would take more DP16KDs than the ECP5 has)."""
        factory = self._weight_memory
        if factory is None and self._config.weight_register and not self._config.dense:
            factory = functools.partial(registered_weight_memory, primitive=self._bram)
        if factory is None:
            mem = self._memory(m, "weights", Target.WEIGHTS)
            return mem.write_port(), mem.read_port(), MEMORY_LATENCY
        m.submodules.weights = mem = factory(self._config, self._image.get(Target.WEIGHTS, []))
        latency = getattr(mem, "latency", MEMORY_LATENCY)
        if latency > array_read:
            raise TernacError(f"a weight buffer with a {latency}-cycle read does not fit a design "
                              f"with weight_register={self._config.weight_register}")
        return mem.write, mem.read, latency

    def _param_ports(self, m):
        """Write and read port of the parameter memory: with ``weight_register`` a
        :class:`~ternac.rtl.ecp5_bram.RegisteredBuffer`, whose read is 2 cycles."""
        cfg = self._config
        if not cfg.weight_register:
            mem = self._memory(m, "params", Target.PARAMS)
            return mem.write_port(), mem.read_port()
        m.submodules.params = mem = RegisteredBuffer(depth=cfg.depth(Target.PARAMS), width=cfg.word_bits(Target.PARAMS),
                                                     init=self._image.get(Target.PARAMS, []), primitive=self._bram)
        return mem.write, mem.read

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        m.submodules.loader = loader = LoadPort(cfg)
        registered = cfg.weight_register
        # The parameter read: with weight_register an address register, then a RegisteredBuffer.
        param_latency = MEMORY_LATENCY + 2 * registered
        m.submodules.sequencer = seq = Sequencer(cfg, settle=self.settle,
                                                  pool_settle=cycles.pool_to_write(False, registered),
                                                  avg_settle=cycles.pool_to_write(True, registered),
                                                  out_latency=cycles.act_read(registered))
        # The pooling unit serves pooling and packing passes: only the convolution walk has them.
        pool = None
        if cfg.conv_walk:
            m.submodules.pool = pool = PoolUnit(n=cfg.coding.n, depth=cfg.act_depth,
                                                packing=cfg.tap_packing, avg=cfg.avg_pool,
                                                maximum=cfg.max_pool)
        m.submodules.acts = acts = ActivationBuffers(depth=cfg.act_depth, n=cfg.coding.n,
                                                     folded=cfg.folded_buffers, registered=registered,
                                                     primitive=self._bram)
        m.submodules.array = array = self._make_array()
        # Cycles from a step's issue to its words at the array's inputs.
        array_read = cycles.issue_to_latch(registered) - array.latency
        m.submodules.shadow = shadow = ShadowBank(lanes=cfg.lanes, n=cfg.coding.n,
                                                  acc_bits=cfg.acc_bits, position=self._position,
                                                  read_depth=cfg.depth(Target.PARAMS),
                                                  held=not cfg.fused_pool)
        m.submodules.requant = requant = Requantizer(acc_bits=cfg.acc_bits, tag_bits=self._position.size + 1,
                                                                 dsp=self._dsp, bias_stage=registered)
        if (acts.latency != cycles.act_read(registered) or acts.write_latency != cycles.BUFFER_WRITE
                or param_latency + requant.latency + acts.write_latency != cycles.drain_to_write(registered)
                or pool and acts.latency + pool.latency + acts.write_latency != cycles.pool_to_write(False, registered)
                or pool and acts.latency + pool.avg_latency + acts.write_latency != cycles.pool_to_write(True, registered)):
            raise AssertionError("RTL latencies differ from the cycle model (model/hw/cycles.py)")
        # The memories are not written while an inference runs, and an idle accelerator
        # offered both a load beat and an input word takes the load first: act_in waits from
        # a transfer's header to its last data beat (and the cycle after it). A beat reaches
        # the load port through a register (`beat`), so neither the `busy` gate nor the
        # source's logic sits in front of the port's state and counts (Fmax); the port never
        # stalls, so `load.ready` is `~busy`, a register. For `act_in` a beat in the register
        # counts as a transfer under way; the status bit is the port's own, a cycle behind
        # the stream (`status.LOAD_PORT_LAG`).
        beat_valid, beat = Signal(), Signal(LOAD_BITS, reset_less=True)
        m.d.sync += [beat_valid.eq(self.load.valid & self.load.ready), beat.eq(self.load.payload)]
        load_busy = loader.busy | beat_valid
        m.d.comb += [loader.load.payload.eq(beat), loader.load.valid.eq(beat_valid),
                     self.load.ready.eq(~seq.busy),
                     seq.load_busy.eq(load_busy), seq.load_valid.eq(self.load.valid)]
        m.d.comb += [self.error.eq(loader.error), self.status.busy.eq(seq.busy),
                     self.status.load_busy.eq(loader.busy), self.status.error.eq(loader.error),
                     self.status.error_code.eq(loader.error_code)]

        def writer(wp, target):
            m.d.comb += [wp.addr.eq(loader.addr), wp.data.eq(loader.word(target)), wp.en.eq(loader.we[target])]
            return wp

        # Weight buffer, parameter memory, layer table: written by the load port only.
        weight_wp, weight_rp, weight_latency = self._weight_ports(m, array_read)
        param_wp, param_rp = self._param_ports(m)
        layers = self._memory(m, "layers", Target.LAYERS)
        writer(weight_wp, Target.WEIGHTS)
        writer(param_wp, Target.PARAMS)
        layer_wp = writer(layers.write_port(), Target.LAYERS)
        # The parameters of the lane the shadow bank shows next (`read_addr`), read a cycle
        # ahead and registered beside its accumulator: no block-RAM read (and, in a deeper
        # memory, no multiplexer between its blocks) in front of the requantizer. With
        # `weight_register` a register on the address and the memory's output register come
        # first: the lane waits two cycles more (`cycles.drain_to_write`).
        param = Signal(param_layout(cfg), reset_less=True)
        m.d.sync += param.eq(param_rp.data)
        if cfg.serial_layers:
            # The sequencer fetches descriptor 0 again after every table write.
            layer_rp = layers.read_port()
            layer_data = [seq.layer_row.eq(layer_rp.data), seq.layer_write.eq(layer_wp.en)]
        else:
            # Transparent: an inference may start the cycle after the last descriptor is loaded.
            layer_rp = layers.read_port(transparent_for=(layer_wp,))
            layer_data = [seq.layer.as_value().eq(layer_rp.data)]
        if cfg.codebook_depth:
            m.d.comb += [array.table_write.addr.eq(loader.addr), array.table_write.data.eq(loader.word(Target.CODEBOOK)),
                         array.table_write.en.eq(loader.we[Target.CODEBOOK]),
                         array.table_base.eq(seq.cur.codebook_base)]

        # Sequencer: streams, descriptor reads, buffer control.
        m.d.comb += [
            self.busy.eq(seq.busy), self.cycles.eq(seq.cycles),
            layer_rp.addr.eq(seq.layer_addr), *layer_data,
            seq.in_valid.eq(self.act_in.valid), self.act_in.ready.eq(seq.in_ready),
            acts.in_phase.eq(seq.in_phase), acts.in_addr.eq(seq.in_addr), acts.in_data.eq(self.act_in.payload), acts.in_en.eq(seq.in_en),
            self.act_out.valid.eq(seq.out_valid), seq.out_ready.eq(self.act_out.ready),
            self.act_out.payload.eq(acts.out_data),
            acts.out_addr.eq(seq.out_addr), acts.out_phase.eq(seq.out_phase),
            acts.out_stall.eq(seq.out_valid & ~self.act_out.ready),
            acts.sel.eq(seq.sel),
            acts.read_addr.eq(seq.act_addr),
        ]
        # Of the cycles the array waits beyond the weight read, all but the last delay the
        # address, not the word: the dense baseline's 512-bit words would take 512 registers a
        # cycle, its address a dozen (and a register after the read is the block's own).
        weight_wait = array_read - weight_latency
        weight_ahead = max(weight_wait - 1, 0)
        m.d.comb += weight_rp.addr.eq(delayed(m, seq.weight_addr, weight_ahead, "weight_addr",
                                              reset_less=True))

        # MAC array: its inputs arrive `array_read` cycles after the issue: the memory read, and
        # with weight_register the weight address's registers, the blocks' output registers
        # and a register after them (784-256-256-10's 32 weight blocks lie all over the die).
        # A tap in the zero padding around a feature map reads a zero word (a max pooling
        # skips it instead). A pooling pass bypasses the array.
        # A group's parameter address travels with it to the shadow bank (``read_start``):
        # added here, from registers, not at the latch in front of the memory's address (Fmax).
        param_start = Signal(self._param_bits)
        m.d.comb += param_start.eq(seq.cur.param_base + seq.position.index)
        tag = Cat(seq.position.as_value(), param_start)
        if cfg.fused_pool:
            tag = Cat(tag, seq.window_first, seq.window_last)
        pooling = seq.cur.pool if pool else Const(0, 1)

        def with_acts(value, name):
            """``value`` in the cycle the activation word read with it is on ``read_data``."""
            return delayed(m, value, acts.latency, name)

        m.d.comb += [array.valid.eq(delayed(m, seq.issue & ~pooling, array_read, "array_valid")),
                     array.last.eq(delayed(m, seq.last, array_read, "array_last", reset_less=True)),
                     array.tag.eq(delayed(m, tag, array_read, "array_tag", reset_less=True)),
                     array.weights.eq(delayed(m, weight_rp.data, weight_wait - weight_ahead, "weights",
                                              reset_less=True))]
        acts_in = Signal.like(array.acts)
        m.d.comb += array.acts.eq(delayed(m, acts_in, array_read - acts.latency, "acts", reset_less=True))
        if pool:
            act_zero = with_acts(seq.act_zero, "act_zero")
            m.d.comb += [acts_in.eq(Mux(act_zero, 0, acts.read_data)),
                         pool.valid.eq(with_acts(seq.issue & pooling, "pool_valid")),
                         pool.first.eq(with_acts(seq.first, "pool_first")),
                         pool.last.eq(with_acts(seq.last, "pool_last")),
                         pool.word.eq(with_acts(seq.pool_word, "pool_word")),
                         pool.acts.eq(acts.read_data), pool.skip.eq(act_zero),
                         acts.word_en.eq(pool.out_valid), acts.word_addr.eq(pool.out_word),
                         acts.word_data.eq(pool.out_data)]
            if cfg.avg_pool:
                m.d.comb += pool.counted.eq(with_acts(seq.pool_counted, "pool_counted"))
        else:
            m.d.comb += acts_in.eq(acts.read_data)

        if cfg.tap_packing or cfg.avg_pool:
            m.d.comb += pool.mode.eq(seq.cur.pool_mode)
        if cfg.tap_packing:
            m.d.comb += pool.tap_bytes.eq(seq.cur.tap_bytes)

        # (Window maximum ->) shadow bank -> parameter read -> requantizer -> byte write into
        # the other buffer.
        sums, latch = array.held_sums, array.latch          # the shadow bank's `held` sums
        if cfg.fused_pool:
            m.submodules.window = window = WindowMax(lanes=cfg.lanes, acc_bits=cfg.acc_bits)
            first, last = array.latch_tag[-2], array.latch_tag[-1]
            m.d.comb += [window.sums.eq(array.sums), window.latch.eq(array.latch),
                         window.first.eq(first), window.last.eq(last)]
            sums, latch = window.out_sums, window.out_latch
        m.d.comb += [shadow.sums.eq(sums), shadow.latch.eq(latch),
                     shadow.position.eq(array.latch_tag[:self._position.size]),
                     shadow.read_start.eq(array.latch_tag[self._position.size:][:self._param_bits]),
                     param_rp.addr.eq(delayed(m, shadow.read_addr, registered, "param_addr", reset_less=True))]
        acc = delayed(m, shadow.acc, param_latency, "acc", reset_less=True)
        pos = delayed(m, shadow.out_position, param_latency, "pos", reset_less=True)
        valid = delayed(m, shadow.valid, param_latency, "valid")
        m.d.comb += [
            # The tag carries the position and whether its lane is inside the pixel's words
            # (the last group's padding lanes are not written), compared here, not at the write.
            requant.valid.eq(valid), requant.acc.eq(acc),
            requant.tag.eq(Cat(pos.as_value(), pos.index < seq.cur.pixel_bytes)),
            requant.bias.eq(param.bias), requant.mult.eq(param.mult),
            requant.shift.eq(param.shift), requant.neg_mult.eq(param.neg_mult),
            requant.neg_shift.eq(param.neg_shift), requant.relu.eq(seq.cur.relu),
            requant.zero.eq(pos.index >= seq.cur.out_features),
        ]
        out_pos = data.View(self._position, requant.out_tag[:-1])
        in_pixel = requant.out_tag[-1]
        m.d.comb += [acts.byte_en.eq(requant.out_valid & in_pixel), acts.byte_addr.eq(out_pos.word),
                     acts.byte_lane.eq(out_pos.byte), acts.byte_data.eq(requant.y)]
        if self._activity:
            self._count_activity(m, seq, array, valid, acts)
        return m

    def _count_activity(self, m, seq, array, requantize, acts):
        """Wire the activity counters to the handshakes they count."""
        cfg = self._config
        m.submodules.activity = activity = ActivityCounters(lanes=cfg.lanes, slots=cfg.coding.k,
                                                             n=cfg.coding.n)
        decoded = Signal()                      # the decoder's table read, one cycle after
        m.d.sync += decoded.eq(array.valid)     # the weight word reached the array
        m.d.comb += [activity.start.eq(seq.in_en & ~seq.busy), activity.input_word.eq(seq.in_en),
                     activity.output_word.eq(self.act_out.valid & self.act_out.ready),
                     activity.step.eq(seq.issue),
                     activity.pool.eq(seq.cur.pool if cfg.conv_walk else 0),
                     activity.decoded.eq(decoded), activity.slot_valid.eq(array.slot_valid),
                     activity.requantize.eq(requantize), activity.byte_write.eq(acts.byte_en),
                     activity.word_write.eq(acts.word_en)]
        wiring.connect(m, wiring.flipped(self.activity), activity.counts)
