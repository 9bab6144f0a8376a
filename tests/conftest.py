"""Shared fixtures: small float models and their quantized networks (fast, deterministic)."""

import itertools

import pytest
import torch
from ternac.model.codebook import Coding
from ternac.model.convert import quantize_network
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


def random_network(sizes, coding=(8, 2), lanes=8, seed=0, codebook_bits=None):
    """A quantized ternac Network of a random MLP, calibrated on uniform inputs."""
    model = random_mlp(sizes, seed)
    calib = torch.rand(256, sizes[0], generator=torch.Generator().manual_seed(seed))
    return quantize_network(model, Coding(*coding), calib, lanes=lanes, codebook_bits=codebook_bits)


@pytest.fixture
def small_network():
    return random_network([20, 13, 7])
