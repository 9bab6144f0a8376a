"""Lowering: the one step that maps a network onto the accelerator.

:func:`lower` turns a :class:`~ternac.model.network.Network` (which holds no hardware choice)
and a :class:`~ternac.model.hw.config.HardwareConfig` into an :class:`AcceleratorProgram`:
the passes the accelerator runs (operator fusion, flatten elimination), every loop bound and
memory base (the layer descriptors), the memory images, the ``load`` stream and the exact
cycle count. Everything downstream -- ``ternac info``/``verilog``/``sim``/``fpga``, the RTL
runners, the energy model -- consumes a program, never a network.

Adding a layer type touches the importer, the golden op, this module (fusion and
descriptor), one RTL block and its tests.
"""

from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np

from ..codebook import Codebook, Coding, TernacError
from ..layout import channel_words
from ..network import FlattenLayer, PoolLayer, ReluLayer, TernaryLayer
from ..pack import Geometry, pack_activations, pack_codes
from .config import KERNEL_BITS, LOAD_BITS, MAX_AVG_TAPS, HardwareConfig, Target, pack_fields
from .cycles import (
    CycleReport,
    fetch_cycles,
    input_cycles,
    layer_cycles,
    output_cycles,
    pool_cycles,
)
from .status import transfer_beats

__all__ = [
    "ACTIONS",
    "AcceleratorProgram",
    "LayerDescriptor",
    "Pass",
    "Walk",
    "array_coding",
    "buffer_depths",
    "decoder_tables",
    "default_table",
    "fused_layers",
    "host_packing",
    "lower",
    "mapping_problem",
    "pack_rows",
    "plan",
    "size_config",
]


#: The accelerator's per-inference actions (:meth:`AcceleratorProgram.actions`), in the order
#: the RTL's activity counters and ``ternac sim --json`` report them.
ACTIONS = ("weight_words_read", "act_words_read", "decoder_lookups", "nonzero_slots",
           "idle_slots", "requantizations", "bytes_written", "input_words", "output_words")


@dataclass(frozen=True)
class Walk:
    """The window walk of one pass (a Linear layer: a 1x1 kernel over a 1x1 map).

    Feature maps are stored pixel by pixel, row-major, each pixel ``channel_words`` words of
    N channels (``model/layout.py``): pixel ``(y, x)`` starts at word ``(y*in_w + x) * CW``.
    A convolution reads, per output pixel and lane group, every tap's CW words (contiguous
    along a kernel row). A pooling pass (``pool``) reads, per output pixel and channel word
    (its "group"), that word of every tap, and combines them: ``"max"``, the byte-wise
    maximum; ``"pack"``, each tap's ``tap_bytes`` channels side by side in one word (the
    packed rows of a convolution with few channels, ``model/layout.py``).

    A convolution followed by a max pooling may run it fused (``window``): its output pixels
    are the pooling's, and each is the maximum, taken on the accumulators before the
    requantizer, of the window's convolution outputs, walked one after another.
    """

    in_w: int
    in_h: int
    channel_words: int      # CW
    kernel_w: int
    kernel_h: int
    stride_x: int
    stride_y: int
    pad_x: int
    pad_y: int
    out_w: int
    out_h: int
    pool: str | None = None         # a pooling pass's combine: "max", "avg" or "pack"
    tap_bytes: int = 0              # "pack": channels of one tap
    count_pad: bool = False         # "avg": the divisor counts padding taps (count_include_pad)
    window: tuple = (1, 1)          # fused max pooling (kh, kw) over the convolution outputs
    window_stride: tuple = (1, 1)   # and its stride (sy, sx)

    @classmethod
    def of(cls, layer, n):
        """The walk of a pooling layer, or of a ternary layer (on its packed rows if it has them)."""
        if isinstance(layer, PoolLayer):
            (kh, kw), (sh, sw) = layer.kernel, layer.stride
            ph, pw = getattr(layer, "padding", (0, 0))
            _, oh, ow = layer.out_shape()
            return cls(layer.in_w, layer.in_h, channel_words(layer.channels, n), kw, kh, sw, sh,
                       pw, ph, ow, oh, pool=layer.mode,
                       count_pad=layer.mode == "avg" and layer.count_include_pad)
        c = layer.conv
        if c is None:
            return cls(1, 1, layer.subvectors, 1, 1, 1, 1, 0, 0, 1, 1)
        if c.packed_row:    # one word per kernel row: a (kh x 1) kernel over the packed map
            return cls(c.out_w, c.in_h, 1, 1, c.kernel[0], 1, c.stride[0], 0, c.padding[0],
                       c.out_w, c.out_h)
        return cls(c.in_w, c.in_h, c.padded_channels // n, c.kernel[1], c.kernel[0], c.stride[1],
                   c.stride[0], c.padding[1], c.padding[0], c.out_w, c.out_h)

    @classmethod
    def packing(cls, conv, n):
        """The pass that packs the rows of ``conv``'s input: word ``(y, ox)`` holds the
        ``kw`` taps of output column ``ox`` on input row ``y``, C channels each."""
        return cls(conv.in_w, conv.in_h, channel_words(conv.in_channels, n), conv.kernel[1], 1,
                   conv.stride[1], 1, conv.padding[1], 0, conv.out_w, conv.in_h, pool="pack",
                   tap_bytes=conv.in_channels)

    def with_pool(self, pool):
        """This convolution walk with max pooling ``pool`` fused into it."""
        _, oh, ow = pool.out_shape()
        return replace(self, window=tuple(pool.kernel), window_stride=tuple(pool.stride),
                       out_w=ow, out_h=oh)

    @property
    def steps_per_group(self):
        """V: reads per output pixel, lane group and window position."""
        return self.kernel_w * self.kernel_h * (1 if self.pool else self.channel_words)

    @property
    def window_positions(self):
        return self.window[0] * self.window[1]

    @property
    def fused(self):
        """Whether a max pooling is fused into this convolution."""
        return self.window != (1, 1) or self.window_stride != (1, 1)

    def fields(self):
        """The walk's descriptor fields (the RTL has no multiplier: address increments).

        ``channel_words`` counts the reads per tap (1 for a pooling), ``tap_step`` is the
        address step per read, ``group_step`` moves a pooling's window to the next channel
        word. ``origin``: window of output pixel (0, 0); ``x_step``/``y_step``: window to the
        next output column/row; ``ky_jump``: end of one kernel row's taps to the next row's.
        With a fused pooling, an output pixel's convolution windows are ``win_x_step`` apart
        along x, the next row of them ``win_y_jump`` on from the last one (input coordinates:
        ``win_stride_x``/``_y``), and ``x_step``, ``y_step``, ``stride_x``, ``stride_y`` move
        a whole pooling window.
        """
        cw, row = self.channel_words, self.in_w * self.channel_words
        (wh, ww), (wsy, wsx) = self.window, self.window_stride
        x_step, y_step = self.stride_x * cw, self.stride_y * row
        return {"in_w": self.in_w, "in_h": self.in_h, "out_w": self.out_w, "out_h": self.out_h,
                "kernel_w": self.kernel_w, "kernel_h": self.kernel_h,
                "stride_x": wsx * self.stride_x, "stride_y": wsy * self.stride_y,
                "pad_x": self.pad_x, "pad_y": self.pad_y,
                "channel_words": 1 if self.pool else cw, "tap_step": cw if self.pool else 1,
                "group_step": int(bool(self.pool)), "pool": int(bool(self.pool)),
                "pool_mode": POOL_MODES[self.pool], "tap_bytes": self.tap_bytes,
                "count_pad": int(self.count_pad),
                "origin": -(self.pad_y * self.in_w + self.pad_x) * cw,
                "x_step": wsx * x_step, "y_step": wsy * y_step,
                "ky_jump": row - self.kernel_w * cw,
                "window_w": ww, "window_h": wh, "win_stride_x": self.stride_x,
                "win_stride_y": self.stride_y, "win_x_step": x_step,
                "win_y_jump": y_step - (ww - 1) * x_step}

    @property
    def pixels(self):
        return self.out_w * self.out_h

    @property
    def spatial(self):
        """Whether this walk needs the convolution walk (``HardwareConfig.conv_walk``): anything
        but a Linear pass's one pixel over its input words in order."""
        return self != Walk(1, 1, self.channel_words, 1, 1, 1, 1, 0, 0, 1, 1)


#: Descriptor ``pool_mode`` of each pooling combine (0 also for a ternary pass).
POOL_MODES = {None: 0, "max": 0, "avg": 1, "pack": 2}


@dataclass(frozen=True)
class LayerDescriptor:
    """One accelerator pass: where its data lives, its loop bounds and its cycles."""

    name: str
    in_features: int
    out_features: int
    words: int              # V: words per output pixel and lane group = kh * kw * CW
    groups: int             # G: lane groups, ceil(O / P)
    pixel_words: int        # words of one output pixel, ceil(O / N)
    in_words: int           # words of the whole input map
    out_words: int          # words of the whole output map
    walk: Walk
    weight_base: int
    param_base: int
    codebook_base: int
    relu: bool
    last: bool
    cycles: int

    @property
    def steps(self):
        """Issued (weight word, activation word) steps, or pooling reads, per inference."""
        return self.words * self.walk.window_positions * self.groups * self.walk.pixels

    def fields(self, n):
        """Values of the descriptor word's fields (:meth:`HardwareConfig.layer_fields`)."""
        return {"weight_base": self.weight_base, "words": self.words, "groups": self.groups,
                "out_features": self.out_features, "param_base": self.param_base,
                "codebook_base": self.codebook_base, "in_words": self.in_words,
                "out_words": self.out_words, "pixel_words": self.pixel_words,
                "pixel_bytes": self.pixel_words * n, **self.walk.fields(),
                "relu": int(self.relu), "last": int(self.last)}


@dataclass(frozen=True)
class AcceleratorProgram:
    """A network lowered onto one accelerator configuration.

    Attributes
    ----------
    config : HardwareConfig
    layers : tuple of LayerDescriptor
        The passes, in order (the layer table).
    images : dict
        Initial contents per :class:`Target`: lists of words from address 0.
    cycles : CycleReport
        Exact cycles of one inference.
    input_packing : Walk or None
        The network's leading row packing when the host does it (an accelerator without
        ``tap_packing``): :meth:`input_stream` sends the packed map, which the first pass reads.
    """

    config: HardwareConfig
    layers: tuple
    images: dict = field(repr=False)
    cycles: CycleReport
    _nonzeros: tuple = field(default=(), repr=False)    # non-zero weight uses per pass
    head: int | None = None                             # the output it computes (heads only)
    input_packing: Walk | None = None

    @property
    def input_words(self):
        return self.layers[0].in_words

    @property
    def output_words(self):
        return self.layers[-1].out_words

    def input_stream(self, x):
        """The ``act_in`` words of one int8 input (a vector, or a (C, H, W) map for a conv).

        A map is sent pixel by pixel, row-major, each pixel's channels zero-padded to whole
        words (``docs/format.md``); a vector in its own order; with :attr:`input_packing`, the
        packed map of :func:`pack_rows`.
        """
        first, n = self.layers[0], self.config.coding.n
        x = np.asarray(x)
        if self.input_packing:
            walk = self.input_packing
            x = pack_rows(x.reshape(walk.tap_bytes, walk.in_h, walk.in_w), walk, n)
        elif first.walk.in_w * first.walk.in_h > 1:
            c = x.shape[-3] if x.ndim >= 3 else x.size // (first.walk.in_w * first.walk.in_h)
            x = x.reshape(c, first.walk.in_h, first.walk.in_w).transpose(1, 2, 0)
            x = np.pad(x, ((0, 0), (0, 0), (0, first.walk.channel_words * n - c)))
        return pack_activations(x.reshape(-1), n)

    def output_positions(self):
        """Byte of the ``act_out`` stream holding each output value, in the golden (C, H, W) order."""
        last, n = self.layers[-1], self.config.coding.n
        o, pixels = np.meshgrid(np.arange(last.out_features), np.arange(last.walk.pixels), indexing="ij")
        return (pixels * last.pixel_words * n + o).reshape(-1)

    def load_beats(self):
        """The ``load`` stream that writes every memory: one transfer per non-empty image."""
        beats = []
        for target, words in self.images.items():
            if words:
                beats += transfer_beats(self.config, int(target), 0, words)
        return beats

    def actions(self):
        """Per-inference action counts of the accelerator, by name (:data:`ACTIONS`).

        The energy model's basis, and what the RTL's activity counters measure
        (``rtl/activity.py``; ``ternac sim --json`` checks the two are equal). Each is what the
        hardware does, not what the network needs:

        ``weight_words_read``: one per issued step of a ternary pass (``V*G`` per output pixel
        and fused pooling window position; a pooling pass, max or row packing, reads no weight). ``act_words_read``: one per issued step of every
        pass, a tap in the zero padding included (it reads word 0, which is then zeroed or
        skipped). ``decoder_lookups``: P codes per weight word. ``nonzero_slots``: decoded
        slots that add or subtract (the decoded codes' non-zeros at every output pixel, padding
        taps included, and so are a learned codebook's non-zeros in the padding columns of a
        last sub-vector; padding lanes decode code 0, no slot). ``idle_slots``: the other ``P*K``
        slots of each ternary step. ``requantizations``: one per lane of each group of a
        ternary pass (``G*P`` per output pixel, padding lanes included; a fused max pooling
        requantizes the window's maximum only). ``bytes_written``:
        the bytes those write (a pixel's lanes past its last word are not written), plus N per
        word a pooling pass writes. ``input_words``/``output_words``: the stream beats.
        """
        counts = self.pass_actions()
        totals = {name: sum(c[name] for _, c in counts) for name in ACTIONS}
        return {**totals, "input_words": self.input_words, "output_words": self.output_words}

    def pass_actions(self):
        """:meth:`actions` per pass, ``[(name, counts)]`` in order (the stream beats are in none)."""
        p, n, k = self.config.lanes, self.config.coding.n, self.config.coding.k
        nonzeros, rows = iter(self._nonzeros), []
        for d in self.layers:
            if d.walk.pool:
                counts = {"act_words_read": d.steps, "bytes_written": d.out_words * n}
            else:
                nonzero = next(nonzeros)
                counts = {"weight_words_read": d.steps, "act_words_read": d.steps,
                          "decoder_lookups": 0 if self.config.dense else d.steps * p,
                          "nonzero_slots": nonzero, "idle_slots": d.steps * p * k - nonzero,
                          "requantizations": d.groups * p * d.walk.pixels,
                          "bytes_written": min(d.groups * p, d.pixel_words * n) * d.walk.pixels}
            rows.append((d.name, {name: counts.get(name, 0) for name in ACTIONS}))
        return rows

    def summary(self):
        """JSON-able description: configuration, passes and cycles."""
        return {"config": self.config.summary(),
                "input_packing": "host" if self.input_packing else None,
                "layers": [asdict(d) for d in self.layers],
                "cycles": self.cycles.to_dict(), "load_beats": len(self.load_beats())}


# -- fusion ---------------------------------------------------------------------------------

def _chain(network, head):
    """The layers one program runs: the trunk, then head ``head`` (a program per output)."""
    if not network.heads:
        if head not in (None, 0):
            raise TernacError(f"the network has one output, there is no head {head}")
        return list(network.layers)
    head = 0 if head is None else head
    if not 0 <= head < len(network.heads):
        raise TernacError(f"the network has heads 0..{len(network.heads) - 1}, not {head}")
    return list(network.layers) + list(network.heads[head])


def _fuse(network, head=None):
    """``(passes, problems)``: the passes as ``[TernaryLayer, relu]`` and every unmappable layer."""
    passes, problems = [], []
    for layer in _chain(network, head):
        if isinstance(layer, TernaryLayer):
            if layer.conv is not None and not layer.conv.padded_channels:
                problems.append(f"layer {layer.name} (conv2d): its weights are coded in the "
                                f"(c, ky, kx) order of format version 1; pack the network again")
            elif layer.conv is not None and max(*layer.conv.kernel, *layer.conv.stride,
                                                 *layer.conv.padding) >= 1 << KERNEL_BITS:
                problems.append(f"layer {layer.name} (conv2d): kernel, stride and padding must be "
                                f"below {1 << KERNEL_BITS}")
            passes.append([layer, bool(layer.relu)])
        elif isinstance(layer, ReluLayer):
            # max(sat(y), 0) == sat(max(y, 0)), and a ReLU commutes with max pooling: it fuses
            # into the requantizer of the last ternary pass before it.
            ternary = [p for p in passes if isinstance(p[0], TernaryLayer)]
            if ternary:
                ternary[-1][1] = True
            else:
                problems.append(f"layer {layer.name} (relu): a ReLU is fused into the requantizer "
                                f"of a preceding ternary layer, and there is none")
        elif isinstance(layer, PoolLayer):
            if layer.mode == "avg" and layer.kernel[0] * layer.kernel[1] > MAX_AVG_TAPS:
                problems.append(f"layer {layer.name} (avgpool): average pooling runs on the "
                                f"accelerator for windows of up to {MAX_AVG_TAPS} values (3x3), "
                                f"not {layer.kernel[0]}x{layer.kernel[1]}")
            elif max(*layer.kernel, *layer.stride, *getattr(layer, "padding", (0,))) >= 1 << KERNEL_BITS:
                problems.append(f"layer {layer.name} ({layer.mode}pool): kernel, stride and padding "
                                f"must be below {1 << KERNEL_BITS}")
            passes.append([layer, False])
        elif isinstance(layer, FlattenLayer):
            # A 1x1 map, or the network input, is stored in torch.flatten's order already.
            # A larger map is stored pixel by pixel, so a Linear reading it would need its
            # columns regrouped: that layer is a convolution with a kernel the map's size.
            c, h, w = (tuple(layer.shape) + (1, 1))[:3]
            if passes and h * w > 1:
                problems.append(f"layer {layer.name} (flatten) of a {c}x{h}x{w} map: a Linear after "
                                f"it cannot read the map's pixel-by-pixel layout; write that Linear "
                                f"as a Conv2d with a {h}x{w} kernel")
        else:
            problems.append(f"layer {layer.name} ({layer.kind}) has no accelerator mapping")
    if not any(isinstance(p[0], TernaryLayer) for p in passes) and not problems:
        problems.append("the network has no ternary layer to run on the accelerator")
    return passes, problems


def fused_layers(network, head=None):
    """The network (or its output ``head``) as the accelerator runs it: ``(layer, relu)`` passes.

    Raises :class:`TernacError` listing every layer that cannot be mapped.
    """
    passes, problems = _fuse(network, head)
    if problems:
        raise TernacError("not mappable: " + "; ".join(problems))
    return [tuple(p) for p in passes]


def mapping_problem(network, lanes=None):
    """``None`` if :func:`lower` maps ``network`` (every head, with ``lanes``), else the reason."""
    try:
        for head in range(max(1, len(network.heads))):
            lower(network, lanes=lanes, head=head)
    except TernacError as error:
        return str(error)
    return None


# -- planning: the passes the accelerator runs ------------------------------------------------

class Pass(NamedTuple):
    """One pass: a ternary layer (with ``relu`` fused), a pooling, or a row packing
    (``walk.pool == "pack"``, for the ternary ``layer`` after it)."""

    name: str
    layer: object
    relu: bool
    walk: Walk


def _fusable(layer, pool):
    """Whether max pooling ``pool`` may run on ``layer``'s accumulators, before the requantizer.

    Exact when every window lies inside the convolution's output (no padding, no ``ceil_mode``
    overhang) and the requantizer is non-decreasing in the accumulator in every channel
    (multipliers >= 0, PReLU's too): then the maximum commutes with it.
    """
    if not isinstance(layer, TernaryLayer) or layer.conv is None or pool.mode != "max":
        return False
    (kh, kw), (sh, sw) = pool.kernel, pool.stride
    _, oh, ow = pool.out_shape()
    inside = (tuple(pool.padding) == (0, 0) and (oh - 1) * sh + kh <= layer.conv.out_h
              and (ow - 1) * sw + kw <= layer.conv.out_w)
    monotone = np.all(layer.mult >= 0) and (layer.neg_mult is None or np.all(layer.neg_mult >= 0))
    return bool(inside and monotone)


def plan(network, n, *, head=None, fuse_pools=True):
    """The passes that run ``network`` (its output ``head``) on an accelerator with N = ``n``.

    A convolution coded in packed rows gets a packing pass first; with ``fuse_pools``, a max
    pooling right after a convolution runs fused into it where :func:`_fusable`.
    """
    passes = []
    for layer, relu in fused_layers(network, head):
        if isinstance(layer, PoolLayer):
            last = passes[-1] if passes else None
            if fuse_pools and last and not last.walk.pool and _fusable(last.layer, layer):
                passes[-1] = last._replace(walk=last.walk.with_pool(layer))
                continue
            passes.append(Pass(layer.name, layer, False, Walk.of(layer, n)))
            continue
        if layer.conv is not None and layer.conv.packed_row:
            passes.append(Pass(f"{layer.name}.pack", layer, False, Walk.packing(layer.conv, n)))
        passes.append(Pass(layer.name, layer, relu, Walk.of(layer, n)))
    return passes


def pack_rows(x, walk, n):
    """The packed map a row-packing pass ``walk`` makes of a (C, H, W) int8 map: (H, out_w, N).

    Word ``(y, ox)`` holds, tap after tap (``kx``), the C channels of input pixel
    ``(y, ox * stride_x - pad_x + kx)``, zero outside the row; the rest of the word is zero.
    The golden form of the pooling unit's packing combine, used when the host packs the input.
    """
    c, h, _ = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (walk.pad_x, walk.pad_x)))
    taps = [padded[:, :, kx: kx + walk.stride_x * walk.out_w: walk.stride_x] for kx in range(walk.kernel_w)]
    rows = np.stack(taps).transpose(2, 3, 0, 1).reshape(h, walk.out_w, walk.kernel_w * c)
    return np.pad(rows, ((0, 0), (0, 0), (0, n - walk.kernel_w * c)))


def host_packing(passes, tap_packing):
    """``(input_packing, passes)``: a leading row packing is done by the host when the
    accelerator has no ``tap_packing`` (the input is sent packed: as many words for a stride
    of 1, no packing cycles), and removed from the passes."""
    if passes and passes[0].walk.pool == "pack" and not tap_packing:
        return passes[0].walk, passes[1:]
    return None, passes


def buffer_depths(shapes):
    """Words activation buffer 0 and 1 hold for passes of ``shapes`` (:func:`_pass_shape`):
    pass ``i`` reads buffer ``i % 2`` and writes the other; the input is in buffer 0."""
    depths = [1, 1]
    for i, (_, _, _, words_in, words_out) in enumerate(shapes):
        depths[i % 2] = max(depths[i % 2], words_in)
        depths[1 - i % 2] = max(depths[1 - i % 2], words_out)
    return tuple(depths)


# -- sizing ---------------------------------------------------------------------------------

def _pass_shape(step, lanes, n):
    """``(V, G, words per output pixel, input map words, output map words)``.

    A pooling's groups are its channel words (one output word each).
    """
    walk = step.walk
    if walk.pool:
        groups = pixel_words = walk.channel_words
    else:
        out = step.layer.out_features
        groups, pixel_words = -(-out // lanes), -(-out // n)
    return (walk.steps_per_group, groups, pixel_words,
            walk.in_w * walk.in_h * walk.channel_words, walk.pixels * pixel_words)


def _pass_cycles(walk, v, g, config):
    if walk.pool:
        return pool_cycles(walk.pixels * g * v, avg=walk.pool == "avg",
                           weight_register=config.weight_register)
    return layer_cycles(v * walk.window_positions, walk.pixels * g, config.lanes,
                        weight_register=config.weight_register)


def array_coding(layers):
    """The (N, K) the MAC array is built for from a network's ternary ``layers``: their common
    N, their largest K.

    Layers of smaller K run on it with their upper slots invalid. N cannot differ: it is the
    activation word (N int8), the unit of every address, of the channel padding of stored maps
    and of a code's sub-vector, so every layer reads and writes the same words.
    """
    ns = sorted({layer.coding.n for layer in layers})
    if len(ns) > 1:
        uses = ", ".join(f"{layer.name} {layer.coding}" for layer in layers)
        raise TernacError(f"layers use sub-vector lengths N={ns} ({uses}): the accelerator's "
                          f"activation word holds one N for every layer; re-code the network "
                          f"with one N (K may differ per layer)")
    return Coding(ns[0], max(layer.coding.k for layer in layers))


def decoder_tables(layers):
    """``(entries, bases)`` of a writable decoder table holding every ternary layer's codebook.

    Each distinct codebook is stored once, in order of first use; ``bases[i]`` is layer ``i``'s
    first entry. Every default-codebook layer shares
    the default table of the largest K among them: the canonical order is prefix-closed in K
    (codes of (N, K) are the first codes of (N, K') for K < K'), and an entry of fewer slots
    is a wider entry with its upper slots invalid.
    """
    default = [layer.coding for layer in layers if not layer.codebook.learned]
    shared = Codebook.default(max(default, key=lambda c: c.k)) if default else None
    books, entries, bases = [], [], []
    for layer in layers:
        book = layer.codebook if layer.codebook.learned else shared
        for known, base in books:
            if known == book:
                break
        else:
            base = len(entries)
            books.append((book, base))
            entries += book.slot_table()
        bases.append(base)
    return entries, bases


def size_config(network, lanes=None, *, dense=False, head=None, serial_layers=False,
                weight_register=False, pack_on_host=False):
    """The smallest :class:`HardwareConfig` that runs ``network`` (its output ``head``) with
    ``lanes`` lanes (a row-serial layer table with ``serial_layers``, the register in front of
    the MAC array with ``weight_register``; with ``pack_on_host`` a leading row packing is
    the host's, :func:`host_packing`).

    ``lanes`` defaults to the network's packing hint ``network.lanes``. Layers may use
    different codings of one N (:func:`array_coding`): the array gets the largest K, codes are
    stored at the widest code width. Default codebooks decode in the (N, K) ROM of that K;
    a learned codebook in any layer needs the writable table (:func:`decoder_tables`).
    """
    ternary = [layer for layer, _ in fused_layers(network, head) if isinstance(layer, TernaryLayer)]
    coding = array_coding(ternary)
    p, n = Geometry(lanes or network.lanes, coding, coding.code_bits).lanes, coding.n   # validated
    passes = plan(network, n, head=head)
    if pack_on_host:
        _, passes = host_packing(passes, any(step.walk.pool == "pack" for step in passes[1:]))
    learned = any(layer.codebook.learned for layer in ternary) and not dense
    shapes = [_pass_shape(step, p, n) for step in passes]
    coded = [shape for shape, step in zip(shapes, passes) if not step.walk.pool]
    depths = buffer_depths(shapes)
    return HardwareConfig(
        lanes=p, coding=coding,
        code_bits=max(layer.codebook.code_bits for layer in ternary) if learned else coding.code_bits,
        weight_depth=sum(v * g for v, g, *_ in coded),
        act_depth=max(max(v for v, *_ in shapes), *depths),
        act_depths=depths if depths[0] != depths[1] else (),
        param_depth=sum(g * p for _, g, *_ in coded),
        layer_depth=len(passes),
        acc_bits=max(layer.acc_bits for layer in ternary),
        codebook_depth=len(decoder_tables(ternary)[0]) if learned else 0,
        dense=dense,
        conv_walk=any(step.walk.spatial for step in passes),
        fused_pool=any(step.walk.fused for step in passes),
        tap_packing=any(step.walk.pool == "pack" for step in passes),
        avg_pool=any(step.walk.pool == "avg" for step in passes),
        max_pool=any(step.walk.pool == "max" for step in passes),
        serial_layers=serial_layers, weight_register=weight_register)


# -- lowering -------------------------------------------------------------------------------

def _check_coding(layer, config):
    where = f"layer {layer.name}"
    if layer.coding.n != config.coding.n:
        raise TernacError(f"{where} uses coding {layer.coding}: its N differs from the accelerator's "
                          f"{config.coding} (the activation word holds N={config.coding.n})")
    if layer.coding.k > config.coding.k:
        raise TernacError(f"{where} uses coding {layer.coding}: it needs K={layer.coding.k} "
                          f"adder/subtractors per lane, the accelerator's {config.coding} array has "
                          f"{config.coding.k}")


def _check_layer(layer, config, index, v, words_in, words_out):
    where = f"layer {layer.name}"
    if not config.dense:
        if layer.codebook.learned and not config.codebook_depth:
            raise TernacError(f"{where} has a learned codebook: the accelerator needs a writable "
                              f"decoder table (codebook depth > 0), it has the default ROM")
        if layer.codebook.code_bits > config.code_bits:
            raise TernacError(f"{where} needs {layer.codebook.code_bits}-bit codes, the weight buffer "
                              f"stores {config.code_bits}-bit codes")
    _check_fits(layer.name, config, index, max(v, words_in), words_out)
    if layer.acc_bits > config.acc_bits:
        raise TernacError(f"{where} needs a {layer.acc_bits}-bit accumulator, the accelerator has "
                          f"{config.acc_bits} bits")
    bound = 1 << (config.acc_bits - 1)
    if np.any(layer.bias < -bound) or np.any(layer.bias >= bound):
        raise TernacError(f"{where}: a bias does not fit the {config.acc_bits}-bit accumulator")


def _check_fits(name, config, index, words_in, words_out):
    """Pass ``index`` reads buffer ``index % 2`` and writes the other (:func:`buffer_depths`)."""
    reads, writes = config.buffer_depths[index % 2], config.buffer_depths[1 - index % 2]
    if (words_in > reads or words_out > writes) and not config.act_depths:
        raise TernacError(f"layer {name} needs {max(words_in, words_out)} activation words "
                          f"({words_in} in, {words_out} out, N={config.coding.n}), each activation "
                          f"buffer holds {config.act_depth}")
    if words_in > reads or words_out > writes:
        raise TernacError(f"layer {name} reads {words_in} activation words from buffer {index % 2} "
                          f"and writes {words_out} to buffer {1 - index % 2} (N={config.coding.n}): "
                          f"they hold {reads} and {writes}")


def _dense_weight_words(layer, config):
    """Baseline weight words of one layer: P*N int8 weights, same order as the codes."""
    p, n = config.lanes, config.coding.n
    g, v = -(-layer.out_features // p), layer.subvectors
    w = np.zeros((g * p, v * n), dtype=np.int64)
    w[:layer.out_features, :layer.in_features] = layer.weights()
    blocks = (w & 0xFF).reshape(g, p, v, n).transpose(0, 2, 1, 3).reshape(g * v, p * n)
    return [sum(int(b) << (8 * i) for i, b in enumerate(row)) for row in blocks]


def default_table(coding):
    """Slot table of the default codebook (the decoder ROM contents)."""
    return Codebook.default(coding).slot_table()


def lower(network, config=None, *, lanes=None, dense=False, head=None):
    """Map ``network`` onto ``config`` (default: :func:`size_config` of the network).

    A network with several outputs (``network.heads``) runs as one program per output: the
    trunk then head ``head`` (default 0). Raises :class:`TernacError` naming what cannot be
    mapped or does not fit.
    """
    config = config or size_config(network, lanes, dense=dense, head=head)
    p, n = config.lanes, config.coding.n
    ternary = [layer for layer, _ in fused_layers(network, head) if isinstance(layer, TernaryLayer)]
    for layer in ternary:
        _check_coding(layer, config)
    input_packing, passes = host_packing(plan(network, n, head=head, fuse_pools=config.fused_pool),
                                         config.tap_packing)
    if len(passes) > config.layer_depth:
        raise TernacError(f"network has {len(passes)} layers, the layer table holds {config.layer_depth}")
    descriptors, images = [], {target: [] for target in Target}
    # Without a writable table every codebook_base is 0 (the ROM).
    bases = [0] * len(ternary)
    if config.codebook_depth:
        images[Target.CODEBOOK], bases = decoder_tables(ternary)
    bases = iter(bases)
    weight = param = 0
    for i, step in enumerate(passes):
        layer, walk = step.layer, step.walk
        v, g, pixel_words, words_in, words_out = _pass_shape(step, p, n)
        last = i == len(passes) - 1
        # A pass runs from its first step to the next pass's: the next descriptor's fetch too.
        cycles = _pass_cycles(walk, v, g, config) + (0 if last else fetch_cycles(config.layer_rows, config.serial_layers))
        if walk.spatial and not config.conv_walk:
            raise TernacError(f"layer {step.name} is a {'pooling' if walk.pool else 'convolution'}: "
                              f"the accelerator has no convolution walk (conv_walk=False)")
        if walk.pool:
            if walk.pool == "pack" and not config.tap_packing:
                raise TernacError(f"layer {layer.name} is coded in packed rows (model/layout.py): "
                                  f"the accelerator needs tap packing, it has none")
            if walk.pool == "max" and not config.max_pool:
                raise TernacError(f"layer {layer.name} is a max pooling: the accelerator's pooling "
                                  f"unit has no max combine (max_pool=False)")
            if walk.pool == "avg" and not config.avg_pool:
                raise TernacError(f"layer {layer.name} is an average pooling: the accelerator's "
                                  f"pooling unit has no average combine (avg_pool=False)")
            _check_fits(step.name, config, i, words_in, words_out)
            channels = layer.channels if isinstance(layer, PoolLayer) else layer.conv.in_channels
            # No weights, parameters or table: bases 0 (the running ones may equal a depth,
            # past their fields, after the last ternary layer).
            descriptors.append(LayerDescriptor(
                step.name, channels, channels, v, g, pixel_words, words_in, words_out,
                walk, 0, 0, 0, False, last, cycles))
            continue
        _check_layer(layer, config, i, v, words_in, words_out)
        base = next(bases)
        descriptors.append(LayerDescriptor(
            step.name, layer.in_features, layer.out_features, v, g, pixel_words, words_in,
            words_out, walk, weight, param, base, step.relu, last, cycles))
        images[Target.WEIGHTS] += (_dense_weight_words(layer, config) if config.dense
                                   else pack_codes(layer.codes, config.geometry))
        for o in range(g * p):
            values = {}
            if o < layer.out_features:
                prelu = layer.neg_mult is not None
                values = {"bias": layer.bias[o], "mult": layer.mult[o], "shift": layer.shift[o],
                          "neg_mult": (layer.neg_mult if prelu else layer.mult)[o],
                          "neg_shift": (layer.neg_shift if prelu else layer.shift)[o]}
            images[Target.PARAMS].append(pack_fields(config.param_fields(), values))
        weight, param = weight + g * v, param + g * p
    for target, name in ((Target.WEIGHTS, "weight buffer"), (Target.PARAMS, "parameter memory"),
                         (Target.CODEBOOK, "codebook table")):
        if len(images[target]) > config.depth(target):
            raise TernacError(f"network needs {len(images[target])} {name} words, the accelerator "
                              f"has {config.depth(target)}")
    # Descriptors last: a base past its memory is reported above as a misfit, not a field overflow.
    words = [pack_fields(config.layer_fields(), d.fields(n)) for d in descriptors]
    rows, row_mask = config.layer_rows, (1 << config.word_bits(Target.LAYERS)) - 1
    images[Target.LAYERS] = [word >> (LOAD_BITS * r) & row_mask for word in words for r in range(rows)]
    report = CycleReport(
        input=input_cycles(descriptors[0].in_words),
        layers=tuple((d.name, d.cycles) for d in descriptors),
        output=output_cycles(descriptors[-1].out_words, config.weight_register),
        macs=tuple(0 if step.walk.pool else _macs(step.layer, step.walk) for step in passes),
        lanes=p, n=n)
    # Every non-zero the decoder hands the array, at every convolution output: also one a
    # learned codebook puts in the padding columns of a last sub-vector (it adds a zero).
    nonzeros = tuple(int(np.count_nonzero(step.layer.codebook.decode(step.layer.codes)))
                     * _positions(step.walk) for step in passes if not step.walk.pool)
    return AcceleratorProgram(config, tuple(descriptors), images, report, nonzeros,
                              (head or 0) if network.heads else None, input_packing)


def _positions(walk):
    """Convolution outputs a ternary pass computes (a fused pooling's window positions each)."""
    return walk.pixels * walk.window_positions


def _macs(layer, walk):
    """Dense-equivalent MACs of a ternary pass, without the padding of the coded columns.

    A fused pooling whose windows skip some convolution outputs computes only the others.
    """
    c = layer.conv
    fan_in = layer.in_features if c is None else c.in_channels * c.kernel[0] * c.kernel[1]
    return fan_in * layer.out_features * min(layer.positions(), _positions(walk))
