"""Column order of a layer's coded weight matrix: which weights share a sub-vector of N.

A Linear weight ``(O, I)`` is coded as is: sub-vector ``v`` holds inputs ``v*N .. v*N+N-1``.
A Conv2d weight ``(O, C, kh, kw)`` is coded in the order ``(ky, kx, c)`` with the channels
zero-padded to ``Cp = ceil(C / N) * N``, so that every sub-vector is N channels of one kernel
tap -- exactly one activation word of an on-chip feature map stored pixel by pixel with its
channels innermost (``docs/format.md``). The padding columns hold zero weights.

These two functions are the one definition of that order; the quantizer, the QAT projection
and the golden ``im2col`` use them.
"""

__all__ = ["channel_words", "coded_matrix", "uncoded_weight"]


def channel_words(channels, n):
    """Words of N int8 that hold one pixel's ``channels`` values: ``ceil(C / N)``."""
    return -(-channels // n)


def coded_matrix(weight, n):
    """The coded weight matrix ``(O, columns)`` of a Linear or Conv2d weight tensor."""
    import torch  # here: the lowering uses channel_words, and `ternac info` stays torch-free

    weight = torch.as_tensor(weight)
    if weight.dim() == 2:
        return weight
    o, c = weight.shape[:2]
    taps = weight.permute(0, 2, 3, 1)                                   # (O, kh, kw, C)
    taps = torch.nn.functional.pad(taps, (0, channel_words(c, n) * n - c))
    return taps.reshape(o, -1)


def uncoded_weight(matrix, shape, n):
    """Inverse of :func:`coded_matrix`: the weight tensor of ``shape`` (padding dropped)."""
    import torch

    matrix = torch.as_tensor(matrix)
    if len(shape) == 2:
        return matrix.reshape(shape)
    o, c, kh, kw = shape
    taps = matrix.reshape(o, kh, kw, channel_words(c, n) * n)[..., :c]
    return taps.permute(0, 3, 1, 2).reshape(shape)
