"""One accelerator instance's parameters: memory sizes, word and field widths, load targets.

The RTL (``ternac.rtl``) is built from a :class:`HardwareConfig`; :func:`ternac.model.hw.lower`
sizes one for a network and maps the network onto it. This module holds only what the
configuration itself defines: the width of every memory word and descriptor field, and the
``load`` stream's framing.

Load protocol (``load`` stream, 32-bit beats). A transfer is two header beats, then data::

    beat 0   target << 28 | address       target: 0 weights, 1 params, 2 layers, 3 codebook
    beat 1   count                        number of memory words that follow
    data     count * ceil(word_bits / 32) beats, each word least significant beat first

Word layouts, all LSB first:

* weights: ``pack.pack_weights`` words (P codes); the dense baseline stores P*N int8 weights
  instead, weight ``i`` of lane ``p`` at bits ``[8*(p*N+i), 8*(p*N+i)+8)``;
* params (one per output neuron, ``G*P`` per layer): bias (signed, ``acc_bits``), M (15 bits),
  S (6 bits);
* layers (one descriptor per layer): the fields of :meth:`HardwareConfig.layer_fields`; with
  ``serial_layers`` each descriptor is :attr:`HardwareConfig.layer_rows` 32-bit words of the
  table, least significant first (descriptor ``d`` at words ``d*rows .. d*rows + rows - 1``);
* codebook (writable decoder table only): ``Codebook.slot_table`` entries of every distinct
  codebook (``lower.decoder_tables``), each ``K*slot_bits`` wide (a codebook of smaller K has
  its upper slots 0: invalid).

Field widths follow one rule: a field is as wide as the largest value it holds
(:func:`field_width`). An address into a memory of depth ``D`` holds at most ``D - 1``; a count
of words holds at most ``D``.
"""

from dataclasses import dataclass, fields
from enum import IntEnum

from ..arith import ACT_BITS, MULT_BITS, SHIFT_BITS, acc_bits
from ..codebook import Coding, TernacError
from ..pack import Geometry

__all__ = [
    "ADDRESS_BITS",
    "INPUT_PACKINGS",
    "KERNEL_BITS",
    "LAYER_TABLES",
    "LOAD_BITS",
    "MAX_AVG_TAPS",
    "HardwareConfig",
    "Target",
    "field_width",
    "pack_fields",
]

LOAD_BITS = 32
ADDRESS_BITS = 28
#: Width of a kernel size, stride or padding in a layer descriptor (at most 15).
KERNEL_BITS = 4
#: Largest average-pooling window (3x3): the pooling unit divides by counts 1..9.
MAX_AVG_TAPS = 9
MAX_DEPTH = 1 << 24
#: The layer table's two forms, as the command lines name them: one descriptor per word, or
#: 32-bit rows (``HardwareConfig.serial_layers``).
LAYER_TABLES = ("wide", "serial")
#: Who packs the rows of a network's first convolution on few channels: a packing pass on
#: chip (``HardwareConfig.tap_packing``), or the host, which sends the input packed.
INPUT_PACKINGS = ("chip", "host")
MAX_ACC_BITS = 40


class Target(IntEnum):
    """Memory selected by a load header (bits 31..28 of beat 0)."""

    WEIGHTS = 0
    PARAMS = 1
    LAYERS = 2
    CODEBOOK = 3


@dataclass(frozen=True)
class HardwareConfig:
    """Parameters of one accelerator instance; invalid combinations raise :class:`TernacError`.

    Parameters
    ----------
    lanes : int
        P, output neurons computed in parallel.
    coding : Coding
        (N, K): N activations per word, K adder/subtractors per lane. A network whose layers
        use different codings of this N runs with K their largest (``lower.array_coding``).
    code_bits : int
        Width of a stored code, the same for every layer: the default (N, K) codebook's width
        for the ROM; with a writable table, the widest codebook's.
    weight_depth, act_depth, param_depth, layer_depth : int
        Words in the weight buffer, in the larger of the two activation buffers (the width of
        every activation address), in the parameter memory (one per output neuron) and in the
        layer-descriptor table.
    act_depths : tuple
        ``(words of buffer 0, words of buffer 1)``, each at most ``act_depth``, when they
        differ; ``()``: both ``act_depth``. Buffer 0 holds the input and the output of every odd pass, buffer 1
        that of every even pass. When the two fit one power-of-two memory of ``act_depth``'s
        address width, buffer 1 is stored from its top down (:attr:`folded_buffers`): a
        Fashion-MNIST CNN's 784-word input beside its 196-word first map takes 16 iCE40
        block RAMs instead of 32.
    acc_bits : int
        Accumulator width (``arith.acc_bits`` of the largest fan-in).
    codebook_depth : int
        0 for the default codebook as a ROM; otherwise the entries of a writable decoder table.
    dense : bool
        The int8 multiply-accumulate baseline instead of the ternary array.
    conv_walk : bool
        The sequencer walks feature maps: kernels, strides, padding, pixels and pooling
        passes. Off, every pass is a matrix-vector product (a Linear layer: one output pixel,
        its input words in order), the descriptor keeps only those fields and the pooling
        unit is not built; an MLP needs about 1,000 fewer iCE40 logic cells (``docs/fpga.md``).
    fused_pool : bool
        Max pooling fused into a convolution (a per-lane window maximum before the
        requantizer, and the walk's pooling-window loop).
    tap_packing : bool
        Packing passes for convolutions with few channels (``model/layout.py``). Off, a
        network's first pass may still be one: the host then sends the input packed
        (:meth:`ternac.model.hw.AcceleratorProgram.input_stream`) and the pass does not run.
    max_pool : bool
        With the convolution walk: the pooling unit has the max combine, for max-pooling
        passes (not fused into a convolution); off, such passes do not run (``size_config``
        turns it off when every max pooling is fused: N 8-bit comparators fewer).
    avg_pool : bool
        The pooling unit has the average combine (per-byte sums and the division by the
        window's count); off, average-pooling passes do not run.
    weight_register : bool
        Every block-RAM read registered (the DP16KD's output register on an ECP5): three more
        cycles from issue to latch (:func:`ternac.model.hw.cycles.issue_to_latch`: a register
        on the weight address, the output register and one after it), so no block-RAM read or
        far route in front of the decoder; two more from the shadow bank to the
        requantizer (:func:`~ternac.model.hw.cycles.drain_to_write`); one more in the output
        phase and in a pooling pass (:func:`~ternac.model.hw.cycles.act_read`). The ECP5
        builds use it: the DP16KD's unregistered read (5.8 ns) into
        the decoder table, then into the MAC array, was their critical path (``docs/fpga.md``).
    serial_layers : bool
        The layer table holds 32-bit rows, :attr:`layer_rows` per descriptor, and the
        sequencer reads the next descriptor one row per cycle after each pass but the last
        (:func:`ternac.model.hw.cycles.fetch_cycles`). Off, the table is one descriptor wide,
        which FPGA synthesis puts in flip-flops: 1,417 iCE40 logic cells for a 4-pass
        CNN's 239-bit descriptors, which a row-wide table in block RAM saves (``docs/fpga.md``).
    """

    lanes: int
    coding: Coding
    code_bits: int
    weight_depth: int
    act_depth: int
    param_depth: int
    layer_depth: int
    acc_bits: int
    codebook_depth: int = 0
    dense: bool = False
    conv_walk: bool = True
    fused_pool: bool = False
    tap_packing: bool = False
    avg_pool: bool = False
    max_pool: bool = True
    serial_layers: bool = False
    weight_register: bool = False
    act_depths: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "act_depths", tuple(self.act_depths))     # from JSON: a list
        if not isinstance(self.coding, Coding):
            raise TernacError(f"coding must be a Coding, got {self.coding!r}")
        Geometry(self.lanes, self.coding, self.code_bits)           # lanes and code width
        if self.coding.k < 1:
            raise TernacError(f"coding {self.coding}: K must be at least 1 for the accelerator")
        for name in ("weight_depth", "act_depth", "param_depth", "layer_depth"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= MAX_DEPTH):
                raise TernacError(f"{name.replace('_', ' ')} must be an integer in 1..{MAX_DEPTH}, got {value!r}")
        if self.act_depths and not (len(self.act_depths) == 2 and all(
                isinstance(d, int) and 1 <= d <= self.act_depth for d in self.act_depths)):
            raise TernacError(f"activation buffer depths must be two word counts in 1..act_depth "
                              f"({self.act_depth}), got {self.act_depths!r}")
        low = acc_bits(self.coding.n, self.coding)
        if not low <= self.acc_bits <= MAX_ACC_BITS:
            raise TernacError(f"accumulator width must be in {low}..{MAX_ACC_BITS} bits for coding "
                              f"{self.coding}, got {self.acc_bits}")
        if not (isinstance(self.codebook_depth, int) and 0 <= self.codebook_depth <= MAX_DEPTH):
            raise TernacError(f"codebook depth must be in 0..{MAX_DEPTH}, got {self.codebook_depth!r}")
        if not self.conv_walk and (self.fused_pool or self.tap_packing or self.avg_pool):
            raise TernacError("fused pooling, tap packing and average pooling are parts of the "
                              "convolution walk: they need conv_walk")
        if self.dense and self.codebook_depth:
            raise TernacError("the dense baseline has no decoder table: codebook depth must be 0")
        if not self.dense and not self.codebook_depth and self.code_bits != self.coding.code_bits:
            raise TernacError(f"the default {self.coding} codebook ROM decodes {self.coding.code_bits}-bit "
                              f"codes, not {self.code_bits}-bit ones (a learned codebook needs a "
                              f"writable table: give a codebook depth)")

    @property
    def geometry(self):
        return Geometry(self.lanes, self.coding, self.code_bits)

    @property
    def weight_bits(self):
        """Width of one weight-buffer word: P codes, or P*N int8 weights for the baseline."""
        return self.lanes * (self.coding.n * ACT_BITS if self.dense else self.code_bits)

    @property
    def act_bits(self):
        return self.coding.n * ACT_BITS

    @property
    def table_bits(self):
        return self.coding.k * self.coding.slot_bits

    @property
    def buffer_depths(self):
        """Words of activation buffer 0 and 1 (see ``act_depths``)."""
        return self.act_depths or (self.act_depth, self.act_depth)

    @property
    def act_address_bits(self):
        """Width of a word address within one activation buffer."""
        return max(1, (self.act_depth - 1).bit_length())

    @property
    def folded_buffers(self):
        """Whether both activation buffers fit one memory of ``2**act_address_bits`` words:
        buffer 1's word ``i`` is then at ``~i`` (its top down), else at ``i`` in the upper half
        of a memory twice that size."""
        return sum(self.buffer_depths) <= 1 << self.act_address_bits

    @property
    def act_memory_depth(self):
        """Words of the memory holding both activation buffers."""
        return 1 << (self.act_address_bits + (not self.folded_buffers))

    @property
    def max_outputs(self):
        """Largest padded output count (``G*P``) an activation buffer can take."""
        return self.act_depth * self.coding.n

    def param_fields(self):
        """Parameter word fields (name, width, signed), LSB first."""
        return [("bias", self.acc_bits, True), ("mult", MULT_BITS, False), ("shift", SHIFT_BITS, False),
                ("neg_mult", MULT_BITS + 1, True), ("neg_shift", SHIFT_BITS, False)]

    def layer_fields(self):
        """Layer-descriptor fields (name, width, signed), LSB first; widths by :func:`field_width`.

        Every pass is a convolution walk (a Linear layer is a 1x1 convolution of a 1x1 map
        with ``channel_words = V``); ``docs/architecture.md`` explains each field.
        """
        a = self.act_depth
        layout = [
            ("weight_base", field_width(self.weight_depth - 1), False),    # address
            ("words", field_width(a), False),                              # V, 1..act_depth
            ("groups", field_width(-(-self.max_outputs // self.lanes)), False),
            ("out_features", field_width(self.max_outputs), False),
            ("param_base", field_width(self.param_depth - 1), False),      # address
        ]
        if self.codebook_depth:
            layout.append(("codebook_base", field_width(self.codebook_depth - 1), False))
        layout += [(name, field_width(a), False) for name in ("in_words", "out_words")]
        if self.conv_walk:
            layout += [(name, field_width(a), False) for name in (
                "pixel_words", "channel_words", "tap_step", "in_w", "in_h", "out_w", "out_h")]
        layout.append(("pixel_bytes", field_width(self.max_outputs), False))
        if self.conv_walk:
            layout += [(name, KERNEL_BITS, False) for name in (
                "kernel_w", "kernel_h", "stride_x", "stride_y", "pad_x", "pad_y")]
            layout += [(name, self.address_bits, True) for name in (
                "origin", "x_step", "y_step", "ky_jump")]
        if self.fused_pool:
            layout += [(name, KERNEL_BITS, False) for name in (
                "window_w", "window_h", "win_stride_x", "win_stride_y")]
            layout += [(name, self.address_bits, True) for name in ("win_x_step", "win_y_jump")]
        if self.tap_packing or self.avg_pool:
            layout.append(("pool_mode", 2, False))
        if self.tap_packing:
            layout.append(("tap_bytes", field_width(self.coding.n), False))
        if self.avg_pool:
            layout.append(("count_pad", 1, False))
        if self.conv_walk:
            layout += [("group_step", 1, False), ("pool", 1, False)]
        return layout + [("relu", 1, False), ("last", 1, False)]

    @property
    def address_bits(self):
        """Signed width of the walk's activation addresses (a window may start before word 0)."""
        return field_width(self.act_depth) + KERNEL_BITS + 2

    @property
    def descriptor_bits(self):
        """Width of one layer descriptor (the fields of :meth:`layer_fields`)."""
        return sum(width for _, width, _ in self.layer_fields())

    @property
    def layer_rows(self):
        """Words of the layer table per descriptor: ``ceil(descriptor_bits / 32)`` with
        ``serial_layers``, else 1."""
        return -(-self.descriptor_bits // LOAD_BITS) if self.serial_layers else 1

    def word_bits(self, target):
        if target == Target.LAYERS:
            return LOAD_BITS if self.serial_layers else self.descriptor_bits
        if target == Target.PARAMS:
            return sum(width for _, width, _ in self.param_fields())
        return self.weight_bits if target == Target.WEIGHTS else self.table_bits

    def depth(self, target):
        return {Target.WEIGHTS: self.weight_depth, Target.PARAMS: self.param_depth,
                Target.LAYERS: self.layer_depth * self.layer_rows,
                Target.CODEBOOK: self.codebook_depth}[target]

    def beats_per_word(self, target):
        return -(-self.word_bits(target) // LOAD_BITS)

    def to_dict(self):
        """The parameters as a JSON-able dict (the one serialisation: manifests, cache keys)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["coding"] = [self.coding.n, self.coding.k]
        values["act_depths"] = list(self.act_depths)                    # as JSON has it
        return values

    @classmethod
    def from_dict(cls, values):
        """Inverse of :meth:`to_dict`; derived keys (as in :meth:`summary`) are ignored."""
        names = {f.name for f in fields(cls)}
        values = {key: value for key, value in values.items() if key in names}
        coding = values["coding"]
        return cls(**{**values, "coding": coding if isinstance(coding, Coding) else Coding(*coding)})

    def replace(self, **changes):
        """A copy with some parameters changed (validated again); a new ``act_depth`` without
        ``act_depths`` makes both buffers that deep."""
        if "act_depth" in changes:
            changes.setdefault("act_depths", ())
        return HardwareConfig.from_dict({**self.to_dict(), **changes})

    def summary(self):
        """:meth:`to_dict` plus the derived word widths."""
        return {**self.to_dict(), "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "word_bits": {t.name.lower(): self.word_bits(t) for t in Target}}


def field_width(largest):
    """Bits of an unsigned field whose largest value is ``largest`` (at least one bit)."""
    return max(1, int(largest).bit_length())


def pack_fields(layout, values):
    """One word from ``values`` laid out as ``layout`` ((name, width, signed), LSB first).

    Missing values are 0. A value outside its field's range raises :class:`TernacError`
    naming the field: nothing is masked silently.
    """
    word, offset = 0, 0
    for name, width, signed in layout:
        value = int(values.get(name, 0))
        low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
        if not low <= value <= high:
            raise TernacError(f"{name}={value} does not fit its {width}-bit "
                              f"{'signed' if signed else 'unsigned'} field ({low}..{high})")
        word |= (value & ((1 << width) - 1)) << offset
        offset += width
    return word


