"""Shared fixtures: small float models and their quantized networks (fast, deterministic)."""

import itertools

import pytest
import torch
from ternac.model.codebook import Coding
from ternac.model.convert import quantize_network
from torch import nn


def random_mlp(sizes, seed=0):
    """A float nn.Sequential MLP with ReLU between layers and random (Kaiming) weights."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def random_network(sizes, coding=(8, 2), lanes=8, seed=0, codebook_bits=None):
    """A quantized ternac Network of a random MLP, calibrated on uniform inputs."""
    model = random_mlp(sizes, seed)
    calib = torch.rand(256, sizes[0], generator=torch.Generator().manual_seed(seed))
    return quantize_network(model, Coding(*coding), calib, lanes=lanes, codebook_bits=codebook_bits)


@pytest.fixture
def small_network():
    return random_network([20, 13, 7])


def random_cnn(input_shape, convs, classes=None, coding=(8, 2), lanes=8, seed=0, codebook_bits=None):
    """A quantized random CNN: ``convs`` is a list of (out channels, kernel, stride, padding)
    Conv2d layers with ReLU; with ``classes``, the last map is flattened into a Linear."""
    torch.manual_seed(seed)
    layers, (c, h, w) = [], input_shape
    for out, k, s, p in convs:
        layers += [nn.Conv2d(c, out, k, stride=s, padding=p), nn.ReLU()]
        c, h, w = out, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if classes:
        layers += [nn.Flatten(), nn.Linear(c * h * w, classes)]
    model = nn.Sequential(*layers).eval()
    calib = torch.rand(64, *input_shape, generator=torch.Generator().manual_seed(seed))
    return quantize_network(model, Coding(*coding), calib, lanes=lanes, codebook_bits=codebook_bits)
