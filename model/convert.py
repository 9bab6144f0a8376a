"""From a float PyTorch network to a ternac :class:`Network` (weights, scales, integers).

Steps: read the layer chain (:mod:`importer`), quantize each Linear/Conv2d weight to (N, K)
ternary codes (:mod:`quantize`), calibrate activation scales on sample inputs with a float
run of the *dequantized* network, then derive the integer bias and requantization ``(M, S)``
of every output channel (:mod:`arith`).
"""

import numpy as np
import torch

from .arith import ACT_MAX, acc_bound, quantize_activations, quantize_multiplier
from .codebook import Codebook, TernacError
from .importer import float_ops
from .layout import channel_words, coded_matrix, uncoded_weight
from .network import ConvGeometry, FlattenLayer, Network, PoolLayer, ReluLayer, TernaryLayer
from .quantize import encode_layer, learn_codebook

__all__ = ["activation_scale", "float_forward", "quantize_inputs", "quantize_network"]

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


def _shape_after(op, shape):
    if op.kind == "flatten":
        return (int(np.prod(shape)),)
    if op.kind in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw) = op.kernel, op.stride
        return (shape[0], (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1)
    return shape


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
        Per-sample input shape; defaults to ``calibration.shape[1:]``.
    codebook_bits : int, optional
        Learn a per-layer codebook of ``2**codebook_bits`` patterns instead of the default one.
    codebooks : list of Codebook, optional
        One codebook per Linear/Conv2d layer, e.g. learned during training (overrides
        ``codebook_bits``).
    ops : list of FloatOp, optional
        An already-read layer chain (from :func:`importer.float_ops`).
    """
    ops = float_ops(model) if ops is None else ops
    x = torch.as_tensor(calibration, dtype=torch.float32)
    shape = tuple(input_shape or x.shape[1:])
    x = x.reshape((len(x),) + shape)
    input_scale = activation_scale(x, percentile)
    scale_in = input_scale
    layers = []
    books = iter(codebooks or [])
    for i, op in enumerate(ops):
        fuse_relu = i + 1 < len(ops) and ops[i + 1].kind == "relu"
        if op.kind in ("linear", "conv2d"):
            book = next(books, None) if codebooks else None
            if book is None:
                book = learn_codebook(coded_matrix(op.weight, coding.n), coding, codebook_bits) if codebook_bits \
                    else Codebook.default(coding)
            layer, x = _ternary_layer(op, x, shape, book, scale_in, fuse_relu, percentile)
            scale_in = layer.out_scale
        elif op.kind == "relu":
            if layers and isinstance(layers[-1], TernaryLayer) and layers[-1].relu:
                continue                                        # fused into the ternary layer
            layer, x = ReluLayer(op.name, shape), torch.relu(x)
        elif op.kind == "flatten":
            layer, x = FlattenLayer(op.name, shape), x.flatten(1)
        else:
            if len(shape) != 3:
                raise TernacError(f"layer {op.name} ({op.kind}) needs a (C, H, W) input, gets {shape}")
            layer = PoolLayer(op.name, op.kind[:3], shape[0], shape[1], shape[2], op.kernel, op.stride)
            pool = torch.nn.functional.max_pool2d if op.kind == "maxpool" else torch.nn.functional.avg_pool2d
            x = pool(x, op.kernel, op.stride)
        layers.append(layer)
        shape = tuple(layer.out_shape())
    return Network(tuple(input_shape or calibration.shape[1:]), input_scale, layers, lanes=lanes)


def _ternary_layer(op, x, shape, book, in_scale, relu, percentile):
    weight = op.weight
    bias = op.bias if op.bias is not None else torch.zeros(weight.shape[0])
    conv = None
    if op.kind == "conv2d":
        if len(shape) != 3 or shape[0] != weight.shape[1]:
            raise TernacError(f"layer {op.name} (Conv2d, {weight.shape[1]} input channels) gets input {shape}")
        n = book.coding.n
        conv = ConvGeometry(shape[0], shape[1], shape[2], op.kernel, op.stride, op.padding,
                            padded_channels=channel_words(shape[0], n) * n)
        matrix = coded_matrix(weight, n)
    else:
        if int(np.prod(shape)) != weight.shape[1]:
            raise TernacError(f"layer {op.name} (Linear, {weight.shape[1]} inputs) gets {int(np.prod(shape))} values")
        matrix = weight
    codes, ternary, scale = encode_layer(matrix, book)
    deq = torch.as_tensor(ternary * scale[:, None], dtype=torch.float32)
    if conv is None:
        y = x.reshape(len(x), -1) @ deq.T + bias
    else:
        y = torch.nn.functional.conv2d(x, uncoded_weight(deq, weight.shape, book.coding.n), bias,
                                       op.stride, op.padding)
    if relu:
        y = torch.relu(y)
    out_scale = activation_scale(y, percentile)
    bias_q, mult, shift = _integer_params(bias.double().numpy(), scale, in_scale, out_scale,
                                          matrix.shape[1], book.coding)
    layer = TernaryLayer(op.name, matrix.shape[1], matrix.shape[0], book, codes, scale, bias_q,
                         mult, shift, relu, in_scale, out_scale, conv)
    return layer, y


def quantize_inputs(network, x):
    """int8 inputs of the network from real-valued ones (B, *input_shape)."""
    x = np.asarray(x, dtype=np.float64).reshape((len(x),) + tuple(network.input_shape))
    return quantize_activations(x, network.input_scale)


def float_forward(layer, x):
    """Real-valued output of one ternary layer on int8 input, with the dequantized weights.

    ``y = (alpha * W) @ (in_scale * x) + bias_real`` then ReLU; returned in units of
    ``out_scale`` (not rounded), for comparison with the integer reference.
    """
    w = layer.weights().astype(np.float64) * layer.scale[:, None]
    bias = layer.bias.astype(np.float64) * layer.scale * layer.in_scale
    y = np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ w.T * layer.in_scale + bias
    if layer.relu:
        y = np.maximum(y, 0)
    return y / layer.out_scale
