"""From a float PyTorch network to a ternac :class:`Network` (weights, scales, integers).

Steps: read the layer graph (:mod:`importer`), quantize each Linear/Conv2d weight to (N, K)
ternary codes (:mod:`quantize`), calibrate activation scales on sample inputs with a float
run of the *dequantized* network, then derive the integer bias and requantization ``(M, S)``
of every output channel (:mod:`arith`); a PReLU / LeakyReLU right after a layer also gets
the negative-side pair ``(M_neg, S_neg)`` of its per-channel slopes. A network with several
outputs is quantized trunk first, then every head from the trunk's output.
"""

import numpy as np
import torch
from torch.nn import functional as F

from .arith import (
    ACT_MAX,
    acc_bound,
    quantize_activations,
    quantize_multiplier,
    quantize_slope_multiplier,
)
from .codebook import Codebook, TernacError
from .importer import import_model
from .layout import channel_words, coded_matrix, packs_taps, uncoded_weight
from .network import ConvGeometry, FlattenLayer, Network, PoolLayer, ReluLayer, TernaryLayer
from .quantize import encode_layer, learn_codebook
from .reference import golden_network, im2col

__all__ = ["activation_scale", "compare_with_float", "float_forward", "float_pool", "input_range_warning", "quantize_inputs",
           "quantize_network"]

DEFAULT_PERCENTILE = 99.99


def activation_scale(values, percentile=DEFAULT_PERCENTILE):
    """Real value of one int8 step so that the ``percentile`` of ``|values|`` maps to 127."""
    values = torch.as_tensor(values, dtype=torch.float32).abs().flatten()
    top = float(np.percentile(values.numpy(), percentile)) if len(values) else 0.0
    return max(top, 1e-8) / ACT_MAX


def _integer_params(bias, scale, in_scale, out_scale, fan_in, coding):
    """Integer bias (clamped to the accumulator bound) and ``(M, S)`` per channel."""
    bound = acc_bound(fan_in, coding)
    bias_q = np.clip(np.floor(bias / (scale * in_scale) + 0.5), -bound, bound).astype(np.int64)
    mult, shift = quantize_multiplier(scale * in_scale / out_scale)
    return bias_q, mult, shift


def float_pool(op, x):
    """PyTorch's pooling for a pool FloatOp or PoolLayer."""
    if op.kind == "maxpool" or getattr(op, "mode", None) == "max":
        return F.max_pool2d(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode)
    return F.avg_pool2d(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode,
                        count_include_pad=op.count_include_pad)


def quantize_network(model, coding, calibration, *, input_shape=None, lanes=8,
                     codebook_bits=None, codebooks=None, percentile=DEFAULT_PERCENTILE, ops=None):
    """Quantize a float model into a :class:`Network`.

    Parameters
    ----------
    model : nn.Module or None
        The float network (ignored when ``ops`` is given).
    coding : Coding
    calibration : tensor (B, ...)
        Sample float inputs used to pick activation scales.
    input_shape : tuple, optional
        Per-sample input shape; defaults to ``ops.input_shape``, else ``calibration.shape[1:]``.
    codebook_bits : int, optional
        Learn a per-layer codebook of ``2**codebook_bits`` patterns instead of the default one.
    codebooks : list of Codebook, optional
        One codebook per Linear/Conv2d layer (trunk, then heads), e.g. learned during
        training (overrides ``codebook_bits``).
    ops : FloatNet, optional
        An already-read network (from :func:`importer.import_model`).
    """
    x = torch.as_tensor(calibration, dtype=torch.float32)
    net = ops if ops is not None else import_model(model, input_shape or tuple(x.shape[1:]))
    shape = tuple(input_shape or net.input_shape)
    x = x.reshape((len(x),) + shape)
    input_scale = activation_scale(x, percentile)
    meta = {"input_range": [float(x.min()), float(x.max())]}       # what the scales were calibrated on
    books = iter(codebooks or [])

    def book_for(op):
        book = next(books, None) if codebooks else None
        if book is None:
            book = learn_codebook(coded_matrix(op.weight, coding.n), coding, codebook_bits) if codebook_bits \
                else Codebook.default(coding)
        return book

    trunk, x, scale, shape = _quantize_chain(net.ops, x, shape, input_scale, book_for, percentile)
    heads = [_quantize_chain(head, x, shape, scale, book_for, percentile)[0] for head in net.heads]
    meta.update({"notes": list(net.notes)} if net.notes else {})
    return Network(tuple(input_shape or net.input_shape), input_scale, trunk, lanes=lanes, meta=meta,
                   heads=heads)


def _quantize_chain(ops, x, shape, scale_in, book_for, percentile):
    """Layers of one chain; returns ``(layers, float output, its scale, its shape)``."""
    layers = []
    for i, op in enumerate(ops):
        after_weights = i > 0 and ops[i - 1].kind in ("linear", "conv2d")
        if op.kind in ("linear", "conv2d"):
            act = ops[i + 1] if i + 1 < len(ops) and ops[i + 1].kind in ("relu", "prelu") else None
            layer, x = _ternary_layer(op, x, shape, book_for(op), scale_in, act, percentile)
            scale_in = layer.out_scale
        elif op.kind in ("relu", "prelu") and after_weights:
            continue                                            # fused into the ternary layer
        elif op.kind == "prelu":
            raise TernacError(f"layer {op.name} (PReLU/LeakyReLU) must directly follow a Linear or Conv2d: "
                              "it is applied in that layer's requantization")
        elif op.kind == "relu":
            layer, x = ReluLayer(op.name, shape), torch.relu(x)
        elif op.kind == "flatten":
            layer, x = FlattenLayer(op.name, shape), x.flatten(1)
        else:
            layer = PoolLayer(op.name, op.kind[:3], shape[0], shape[1], shape[2], op.kernel, op.stride,
                              op.padding, op.ceil_mode, op.count_include_pad)
            x = float_pool(op, x)
        layers.append(layer)
        shape = tuple(layer.out_shape())
    return layers, x, scale_in, shape


def _ternary_layer(op, x, shape, book, in_scale, act, percentile):
    weight = op.weight
    bias = op.bias if op.bias is not None else torch.zeros(weight.shape[0])
    conv = None
    if op.kind == "conv2d":
        n = book.coding.n
        conv = ConvGeometry(shape[0], shape[1], shape[2], op.kernel, op.stride, op.padding,
                            padded_channels=channel_words(shape[0], n) * n,
                            packed_row=n if packs_taps(shape[0], op.kernel[1], n) else None)
    matrix = coded_matrix(weight, book.coding.n)
    codes, ternary, scale = encode_layer(matrix, book)
    deq = torch.as_tensor(ternary * scale[:, None], dtype=torch.float32)
    if conv is None:
        y = x.reshape(len(x), -1) @ deq.T + bias
    else:
        y = F.conv2d(x, uncoded_weight(deq, weight.shape, book.coding.n), bias, op.stride, op.padding)
    slope = None
    if act is not None and act.kind == "relu":
        y = torch.relu(y)
    elif act is not None:
        slope = act.slope.expand(weight.shape[0]) if len(act.slope) == 1 else act.slope
        y = torch.where(y >= 0, y, y * slope.reshape((1, -1) + (1,) * (y.dim() - 2)))
    out_scale = activation_scale(y, percentile)
    bias_q, mult, shift = _integer_params(bias.double().numpy(), scale, in_scale, out_scale,
                                          matrix.shape[1], book.coding)
    neg_mult = neg_shift = None
    if slope is not None:
        neg_mult, neg_shift = quantize_slope_multiplier(slope.double().numpy() * scale * in_scale / out_scale)
    layer = TernaryLayer(op.name, matrix.shape[1], matrix.shape[0], book, codes, scale, bias_q,
                         mult, shift, act is not None and act.kind == "relu", in_scale, out_scale, conv,
                         neg_mult, neg_shift)
    return layer, y


def input_range_warning(calibration, inputs, what="evaluation"):
    """One line when the ``inputs`` do not span the calibration inputs' value range, else None.

    Activation scales are picked on the calibration inputs; inputs beyond their range by more
    than a tenth of it (e.g. [-1, 1] against [0, 1]), or within a quarter of it, get
    saturated or coarse activations all the way through the network.
    """
    calibration, inputs = np.asarray(calibration), np.asarray(inputs)
    lo, hi, a, b = float(calibration.min()), float(calibration.max()), float(inputs.min()), float(inputs.max())
    span = max(hi - lo, 1e-12)
    if a < lo - 0.1 * span or b > hi + 0.1 * span or b - a < 0.25 * span:
        return (f"calibration inputs span [{lo:.3g}, {hi:.3g}] but the {what} inputs span [{a:.3g}, {b:.3g}]: "
                "the activation scales do not fit them; calibrate on the same data")
    return None


def compare_with_float(network, x, want):
    """The integer network against float outputs ``want`` (a tensor, or a tuple per head) on ``x``.

    Returns the share of inputs whose first-head argmax agrees, and per output the RMS error of
    the dequantized int8 outputs relative to the float outputs' RMS (None for an output whose
    last layer has no scale, e.g. a pooling).
    """
    want = [np.asarray(w, dtype=np.float64).reshape(len(x), -1)
            for w in (want if isinstance(want, tuple) else (want,))]
    got = golden_network(network, quantize_inputs(network, x))
    got = [g.reshape(len(x), -1) for g in (got if network.heads else [got])]
    errors = []
    for g, w, chain in zip(got, want, network.heads or [network.layers]):
        scale = getattr((chain or network.layers)[-1], "out_scale", None)
        errors.append(None if scale is None else
                      float(np.sqrt(np.mean((g * scale - w) ** 2)) / max(np.sqrt(np.mean(w ** 2)), 1e-12)))
    return {"samples": len(x), "agreement": float((got[0].argmax(1) == want[0].argmax(1)).mean()),
            "relative_rms_error": errors}


def quantize_inputs(network, x):
    """int8 inputs of the network from real-valued ones (B, *input_shape)."""
    x = np.asarray(x, dtype=np.float64).reshape((len(x),) + tuple(network.input_shape))
    return quantize_activations(x, network.input_scale)


def float_forward(layer, x):
    """Real-valued output of one ternary layer on int8 input, with the dequantized weights.

    ``y = (alpha * W) @ (in_scale * x) + bias_real`` (per im2col column for a Conv2d), then
    the activation (ReLU, or the negative-side slope the layer's multipliers represent);
    returned in units of ``out_scale`` (not rounded), shape (B, *out_shape), for comparison
    with the integer reference.
    """
    w = layer.weights().astype(np.float64) * layer.scale[:, None]
    bias = layer.bias.astype(np.float64) * layer.scale * layer.in_scale
    x = np.asarray(x, dtype=np.float64).reshape((len(x),) + tuple(layer.in_shape()))
    columns = x.reshape(len(x), -1) if layer.conv is None else im2col(x, layer.conv)
    y = columns @ w.T * layer.in_scale + bias                          # (B, O) or (B, P, O)
    if layer.relu:
        y = np.maximum(y, 0)
    elif layer.neg_mult is not None:
        slope = (layer.neg_mult * np.exp2(-layer.neg_shift.astype(np.float64))) / \
            (layer.mult * np.exp2(-layer.shift.astype(np.float64)))
        y = np.where(y < 0, y * slope, y)
    if layer.conv is not None:
        y = y.transpose(0, 2, 1).reshape((len(x),) + tuple(layer.out_shape()))
    return y / layer.out_scale
