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


def test_prelu_requantization_uses_the_biased_accumulator_sign():
    """acc < 0 (bias included) takes (M_neg, S_neg); a ReLU is M_neg = 0; slopes may be negative."""
    from ternac.model.arith import quantize_slope_multiplier, requantize, round_half_up
    acc = np.arange(-3000, 3000, 7)
    mult, shift = np.full(1, 23000), np.full(1, 20)
    relu = requantize(acc, mult, shift, True)
    assert (requantize(acc, mult, shift, False, np.zeros(1, np.int64), np.zeros(1, np.int64)) == relu).all()
    neg_mult, neg_shift = quantize_slope_multiplier(np.array([-0.25 * 23000 / 2**20]))
    assert neg_mult[0] < 0
    y = requantize(acc, mult, shift, False, neg_mult, neg_shift).astype(np.int64)
    assert (y[acc >= 0] == relu[acc >= 0]).all()
    assert (y[acc < 0] == np.clip(round_half_up(acc[acc < 0] * neg_mult, neg_shift), -128, 127)).all()
    # hand-checked: -5 * -3 = 15, (15 + 1) >> 1 = 8; -5 * 3 = -15, (-15 + 2) >> 2 = -4 (half up)
    assert requantize(np.array([-5]), 1, 0, False, np.array([-3]), np.array([1]))[0] == 8
    assert requantize(np.array([-5]), 1, 0, False, np.array([3]), np.array([2]))[0] == -4
    assert quantize_slope_multiplier(np.array([0.0, 1e-3]))[0][0] == 0
