"""Shared fixtures: small float models and their quantized networks (fast, deterministic)."""

import itertools

import pytest
import torch
from ternac.model.codebook import Coding
from ternac.model.convert import quantize_network
from ternac.model.network import pool_output_size
from torch import nn

#: pytest-timeout for FPGA builds (the default in pyproject.toml, 300 s, is for everything
#: else): place-and-route of the larger devices legitimately takes minutes.
FPGA_TIMEOUT_SECONDS = 1800


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("fpga") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(FPGA_TIMEOUT_SECONDS))


def random_mlp(sizes, seed=0):
    """A float nn.Sequential MLP with ReLU between layers and random (Kaiming) weights."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def layer_codebooks(model, codings):
    """One codebook per Linear/Conv2d of ``model``: ``(N, K)`` the default codebook,
    ``(N, K, B)`` a learned ``2**B``-entry one (a network of mixed codings)."""
    from ternac.model.codebook import Codebook
    from ternac.model.layout import coded_matrix
    from ternac.model.quantize import learn_codebook

    ops = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(ops) != len(codings):
        raise ValueError(f"{len(ops)} weight layers, {len(codings)} codings")
    return [Codebook.default(Coding(n, k)) if not bits else
            learn_codebook(coded_matrix(op.weight.detach(), n), Coding(n, k), bits[0])
            for op, (n, k, *bits) in zip(ops, codings)]


def random_network(sizes, coding=(8, 2), lanes=8, seed=0, codebook_bits=None, codings=None):
    """A quantized ternac Network of a random MLP, calibrated on uniform inputs; ``codings``:
    one coding per layer instead (:func:`layer_codebooks`)."""
    model = random_mlp(sizes, seed)
    calib = torch.rand(256, sizes[0], generator=torch.Generator().manual_seed(seed))
    books = layer_codebooks(model, codings) if codings else None
    return quantize_network(model, Coding(*coding), calib, lanes=lanes, codebook_bits=codebook_bits,
                            codebooks=books)


@pytest.fixture
def small_network():
    return random_network([20, 13, 7])


def random_cnn(input_shape, convs, classes=None, coding=(8, 2), lanes=8, seed=0, codebook_bits=None,
               codings=None):
    """A quantized random CNN: ``convs`` is a list of (out channels, kernel, stride, padding)
    Conv2d layers with ReLU, or ("max" or "avg", kernel, stride[, padding[, ceil_mode[,
    count_include_pad]]]) poolings; with ``classes``, the last map is flattened into a Linear.
    ``codings``: one coding per weight layer instead."""
    torch.manual_seed(seed)
    layers, (c, h, w) = [], input_shape
    for out, k, s, *rest in convs:
        p, ceil, include = (*rest, *(0, False, True)[len(rest):])
        if out == "max":
            layers.append(nn.MaxPool2d(k, s, p, ceil_mode=ceil))
        elif out == "avg":
            layers.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include))
        else:
            layers += [nn.Conv2d(c, out, k, stride=s, padding=p), nn.ReLU()]
            c = out
        h, w = (pool_output_size(size, k, s, p, ceil) for size in (h, w))
    if classes:
        layers += [nn.Flatten(), nn.Linear(c * h * w, classes)]
    model = nn.Sequential(*layers).eval()
    calib = torch.rand(64, *input_shape, generator=torch.Generator().manual_seed(seed))
    books = layer_codebooks(model, codings) if codings else None
    return quantize_network(model, Coding(*coding), calib, lanes=lanes, codebook_bits=codebook_bits,
                            codebooks=books)


#: Conv geometries ((C, H, W), [(out, kernel, stride, padding)], classes): kernels 1 to 5,
#: stride 1 and 2, padding 0 to 2, channels not a multiple of N, odd map sizes, a conv down
#: to a 1x1 map then a Linear, max pooling (kernel 2 and 3, stride 2) between convolutions;
#: average pooling (kernel 2 stride 2; kernel 3 stride 2 padding 1; ceil_mode overhangs with
#: and without count_include_pad; on the signed network input, and between convolutions).
CONV_CASES = [
    ((3, 7, 7), [(5, 3, 1, 1)], None),
    ((1, 9, 7), [(4, 5, 2, 2), (10, 3, 1, 0)], None),
    ((12, 5, 5), [(6, 1, 1, 0), (7, 5, 1, 0)], 3),
    ((12, 5, 5), [(6, 3, 2, 1)], None),
    ((3, 6, 6), [(9, 3, 2, 0), (5, 2, 1, 0)], 4),
    ((1, 8, 8), [(6, 3, 1, 1), ("max", 2, 2), (10, 3, 1, 1), ("max", 2, 2), (7, 2, 1, 0)], None),
    ((5, 7, 7), [(9, 3, 1, 0), ("max", 3, 2), (4, 2, 1, 0)], 3),
    ((4, 9, 9), [(6, 3, 1, 1), ("max", 2, 1), ("avg", 2, 2), (5, 3, 1, 0)], None),
    ((3, 7, 7), [(9, 3, 1, 1), ("avg", 3, 2, 1), (4, 2, 1, 0)], 3),
    ((9, 6, 6), [("avg", 3, 2, 1, True, False), (6, 1, 1, 0), ("avg", 3, 2, 1, True)], None),
]
#: A 12x12 input, then maps of 36 and 16 words: with the input packed by the host
#: (``size_config(pack_on_host=True)``) the two activation buffers fold into one memory of
#: 256 words.
FOLDING_CNN = ((1, 12, 12), [(4, 3, 1, 1), ("max", 2, 2), (5, 3, 1, 0)], None)
#: The CONV_CASES with average pooling.
AVG_CASES = [i for i, (_, convs, _) in enumerate(CONV_CASES) if any(c[0] == "avg" for c in convs)]
