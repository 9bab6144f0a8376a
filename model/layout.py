"""Column order of a layer's coded weight matrix: which weights share a sub-vector of N.

A Linear weight ``(O, I)`` is coded as is: sub-vector ``v`` holds inputs ``v*N .. v*N+N-1``.
A Conv2d weight ``(O, C, kh, kw)`` is coded in one of two orders (``docs/format.md``):

* **channel words** (the general case): ``(ky, kx, c)`` with the channels zero-padded to
  ``Cp = ceil(C / N) * N``, so that every sub-vector is N channels of one kernel tap --
  exactly one activation word of an on-chip feature map stored pixel by pixel with its
  channels innermost;
* **packed rows** (few channels, :func:`packs_taps`: ``kw > 1`` and ``C * kw <= N``, e.g. a
  first layer on a grey image): ``(ky, [kx, c])`` with each kernel row's ``kw * C`` weights
  zero-padded to N, so that one sub-vector is one whole kernel row. The accelerator reads a
  word of ``kw`` neighbouring pixels there, which it packs on chip; a 3x3 kernel on one
  channel takes 3 words instead of 9.

The padding columns hold zero weights. These functions are the one definition of the order;
the quantizer, the QAT projection, the golden ``im2col`` and the lowering use them.
"""

__all__ = ["channel_words", "coded_matrix", "packs_taps", "uncoded_weight"]


def channel_words(channels, n):
    """Words of N int8 that hold one pixel's ``channels`` values: ``ceil(C / N)``."""
    return -(-channels // n)


def packs_taps(channels, kernel_w, n):
    """Whether a convolution's coded columns are packed rows: ``kw > 1`` and ``C * kw <= N``."""
    return kernel_w > 1 and channels * kernel_w <= n


def coded_matrix(weight, n, packed=None):
    """The coded weight matrix ``(O, columns)`` of a Linear or Conv2d weight tensor.

    ``packed`` chooses a convolution's order; ``None`` applies :func:`packs_taps` (what a
    newly coded network uses; a stored layer says which order it has).
    """
    import torch  # here: the lowering uses channel_words, and `ternac info` stays torch-free

    weight = torch.as_tensor(weight)
    if weight.dim() == 2:
        return weight
    o, c, kh, kw = weight.shape
    taps = weight.permute(0, 2, 3, 1)                                   # (O, kh, kw, C)
    if packs_taps(c, kw, n) if packed is None else packed:
        rows = torch.nn.functional.pad(taps.reshape(o, kh, kw * c), (0, n - kw * c))
        return rows.reshape(o, kh * n)
    taps = torch.nn.functional.pad(taps, (0, channel_words(c, n) * n - c))
    return taps.reshape(o, -1)


def uncoded_weight(matrix, shape, n, packed=None):
    """Inverse of :func:`coded_matrix`: the weight tensor of ``shape`` (padding dropped)."""
    import torch

    matrix = torch.as_tensor(matrix)
    if len(shape) == 2:
        return matrix.reshape(shape)
    o, c, kh, kw = shape
    if packs_taps(c, kw, n) if packed is None else packed:
        taps = matrix.reshape(o, kh, n)[..., :kw * c].reshape(o, kh, kw, c)
    else:
        taps = matrix.reshape(o, kh, kw, channel_words(c, n) * n)[..., :c]
    return taps.permute(0, 3, 1, 2).reshape(shape)
