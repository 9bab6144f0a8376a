"""The integer reference against float PyTorch, conv/pool mapping, and bad inputs."""

import numpy as np
import pytest
import torch
from conftest import random_network
from ternac.model.codebook import Coding, TernacError
from ternac.model.convert import float_forward, quantize_inputs, quantize_network
from ternac.model.layout import uncoded_weight
from ternac.model.reference import golden_layer, golden_network, im2col
from torch import nn


def test_reference_agrees_with_float_pytorch_within_rounding():
    """Per layer, on the same int8 input: |integer - round(float)| <= 1 LSB.

    The float side is the dequantized network in float64 (alpha*W, real bias, real scales);
    the only differences allowed are the 15-bit requantization multiplier and the integer
    bias, which may move a value across a rounding boundary by one step.
    """
    net = random_network([64, 48, 32, 10], coding=(8, 2), seed=3)
    x = quantize_inputs(net, np.random.default_rng(0).random((200, 64)))
    mismatched = 0
    for layer in net.layers:
        expect = np.clip(np.floor(float_forward(layer, x) + 0.5), -128, 127)
        got = golden_layer(layer, x).astype(np.int64)
        assert np.abs(got - expect).max() <= 1, layer.name
        mismatched += int((got != expect).sum())
        x = golden_layer(layer, x)
    assert mismatched < 0.01 * 200 * (48 + 32 + 10)


def test_reference_matches_torch_ops_exactly_on_integers():
    """Conv (im2col order), max/avg pool, flatten, linear: integer-exact against torch on ints."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(5, 6, 2), nn.AvgPool2d(2, 1), nn.Flatten(), nn.Linear(6 * 1 * 1, 4)).eval()
    calib = torch.rand(64, 3, 12, 12)
    net = quantize_network(model, Coding(8, 2), calib)
    x = quantize_inputs(net, calib[:16].numpy())
    outs = golden_network(net, x, trace=True)
    xin = torch.as_tensor(x, dtype=torch.float64)
    conv = net.layers[0]
    weight = uncoded_weight(torch.as_tensor(conv.weights(), dtype=torch.float64), (5, 3, 3, 3), 8)
    acc = torch.nn.functional.conv2d(xin, weight,
                                     torch.as_tensor(conv.bias, dtype=torch.float64), stride=2, padding=1)
    cols = im2col(x, conv.conv)
    assert cols.shape == (16, 36, 3 * 3 * 8)              # (ky, kx, c) over channels padded to N
    assert not cols.reshape(16, 36, 9, 8)[..., 3:].any()  # the padding channels read zeros
    from ternac.model.arith import requantize
    expect = requantize(acc.numpy().astype(np.int64), conv.mult[:, None, None], conv.shift[:, None, None], True)
    assert (outs[0] == expect).all()
    pooled = torch.nn.functional.max_pool2d(torch.as_tensor(outs[0], dtype=torch.float64), 2)
    assert (outs[1] == pooled.numpy()).all()
    assert [layer.kind for layer in net.layers] == ["ternary", "pool", "ternary", "pool", "flatten", "ternary"]
    assert net.layers[3].mode == "avg"
    windows = torch.nn.functional.avg_pool2d(torch.as_tensor(outs[2], dtype=torch.float64), 2, 1) * 4
    assert (outs[3] == np.floor((windows.numpy() + 2) / 4)).all()
    assert outs[-1].shape == (16, 4)


def test_reference_rejects_bad_inputs(small_network):
    with pytest.raises(TernacError, match="int8"):
        golden_network(small_network, np.zeros((1, 20), dtype=np.float32))
    with pytest.raises(TernacError, match="shape"):
        golden_network(small_network, np.zeros((1, 21), dtype=np.int8))
