"""The golden integer reference: whole-network execution, bit-exact by definition.

Every function here works on integers only (int8 activations, int64 accumulators); the
dot products use float64 BLAS, which is exact because every partial sum stays far below
2**53 (the accumulator bound of ``arith.acc_bits`` is at most about 2**26).
"""

import numpy as np

from .arith import ACT_MAX, ACT_MIN, requantize
from .codebook import TernacError
from .network import FlattenLayer, PoolLayer, ReluLayer, TernaryLayer

__all__ = ["golden_accumulate", "golden_layer", "golden_network", "golden_predict", "im2col"]


def im2col(x, conv):
    """Columns of a (B, C, H, W) int tensor for ``conv``: (B, out_h*out_w, fan_in).

    Column order is the coded weights' (``ConvGeometry``, ``model/layout.py``): ``(ky, kx, c)``
    over zero-padded channels, ``(ky, [kx, c])`` rows padded to N (packed rows), or
    ``(c, ky, kx)`` for a version-1 file. Rows run over output
    positions row-major (oy, then ox). Spatial padding inserts int8 zeros.
    """
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel, conv.stride, conv.padding
    b, c = x.shape[:2]
    cp = c if conv.packed_row else conv.padded_channels or c
    x = np.pad(x, ((0, 0), (0, cp - c), (ph, ph), (pw, pw)))
    cols = np.empty((b, conv.out_h, conv.out_w, cp, kh, kw), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            cols[..., ky, kx] = x[:, :, ky: ky + sh * conv.out_h: sh, kx: kx + sw * conv.out_w: sw] \
                .transpose(0, 2, 3, 1)
    if conv.packed_row:                                                  # (ky, [kx, c])
        rows = cols.transpose(0, 1, 2, 4, 5, 3).reshape(b, conv.out_h, conv.out_w, kh, kw * c)
        cols = np.pad(rows, ((0, 0),) * 4 + ((0, conv.packed_row - kw * c),))
    elif conv.padded_channels:
        cols = cols.transpose(0, 1, 2, 4, 5, 3)                          # (ky, kx, c)
    return cols.reshape(b, conv.out_h * conv.out_w, conv.fan_in)


def golden_accumulate(layer, columns):
    """Accumulators ``W @ x + bias`` (int64) for input columns (..., in_features)."""
    w = layer.weights().astype(np.float64)
    columns = np.asarray(columns, dtype=np.float64)
    acc = columns.reshape(-1, columns.shape[-1]) @ w.T          # one 2-D GEMM: 3-D @ is slow
    return acc.reshape(columns.shape[:-1] + (w.shape[0],)).astype(np.int64) + layer.bias.astype(np.int64)


def _pool_counts(size, out, kernel, stride, pad, include_pad):
    """Values per window along one axis (PyTorch's ``avg_pool2d`` divisor): the window clipped
    to the padded input ``[-pad, size + pad)``, or to the input ``[0, size)`` without
    ``count_include_pad``."""
    start = np.arange(out) * stride - pad
    low, high = (-pad, size + pad) if include_pad else (0, size)
    return np.minimum(start + kernel, high) - np.maximum(start, low)


def _pool(layer, x):
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    _, oh, ow = layer.out_shape()
    h, w = x.shape[2:]
    fill = ACT_MIN if layer.mode == "max" else 0          # -128 never wins a max: padding ignored
    bottom, right = max(0, (oh - 1) * sh + kh - h - ph), max(0, (ow - 1) * sw + kw - w - pw)
    x = np.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)), constant_values=fill)
    windows = np.stack([x[:, :, ky: ky + sh * oh: sh, kx: kx + sw * ow: sw]
                        for ky in range(kh) for kx in range(kw)], axis=-1).astype(np.int64)
    if layer.mode == "max":
        return windows.max(axis=-1).astype(np.int8)
    include = layer.count_include_pad
    count = _pool_counts(h, oh, kh, sh, ph, include)[:, None] * _pool_counts(w, ow, kw, sw, pw, include)[None, :]
    return np.clip((windows.sum(axis=-1) + count // 2) // count, ACT_MIN, ACT_MAX).astype(np.int8)


def golden_layer(layer, x):
    """One layer on a batch of int8 activations (B, *in_shape) -> (B, *out_shape) int8."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TernacError(f"layer {layer.name}: activations must be int8, got {x.dtype}")
    x = x.reshape((x.shape[0],) + tuple(layer.in_shape()))
    if isinstance(layer, TernaryLayer):
        columns = x if layer.conv is None else im2col(x, layer.conv)      # (B, I) or (B, P, I)
        y = requantize(golden_accumulate(layer, columns), layer.mult, layer.shift, layer.relu,
                       layer.neg_mult, layer.neg_shift)
        if layer.conv is None:
            return y
        return y.transpose(0, 2, 1).reshape((x.shape[0],) + layer.out_shape())
    if isinstance(layer, PoolLayer):
        return _pool(layer, x)
    if isinstance(layer, ReluLayer):
        return np.maximum(x, 0).astype(np.int8)
    if isinstance(layer, FlattenLayer):
        return x.reshape(x.shape[0], -1)
    raise TernacError(f"layer {layer.name}: unknown layer type {type(layer).__name__}")


def golden_network(network, x, trace=False):
    """Run the network on int8 inputs (B, *input_shape).

    Returns the int8 outputs (B, *output_shape); for a network with heads, the list of every
    head's outputs. With ``trace=True``: the list of every layer's output in
    ``network.all_layers`` order (trunk, then each head), so for a single-output network
    the last one is the network output.
    """
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TernacError(f"network inputs must be int8 (quantize them with the network's input_scale), got {x.dtype}")
    expect = int(np.prod(network.input_shape))
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != expect:
        raise TernacError(f"network inputs must have shape (batch, {expect} values), got {x.shape}")
    outputs = []
    for layer in network.layers:
        x = golden_layer(layer, x)
        outputs.append(x)
    heads = []
    for head in network.heads:
        y = x
        for layer in head:
            y = golden_layer(layer, y)
            outputs.append(y)
        heads.append(y)
    if trace:
        return outputs
    return heads if network.heads else x


def golden_predict(network, x, batch=1024):
    """Class predictions (argmax of the int8 logits; the lowest index wins a tie).

    A network with heads predicts from its first head (the classifier by convention).
    """
    def logits(xb):
        out = golden_network(network, xb)
        return (out[0] if network.heads else out).reshape(len(xb), -1)

    preds = [logits(x[i: i + batch]).argmax(axis=1) for i in range(0, len(x), batch)]
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
