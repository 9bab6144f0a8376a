"""The lowering step (model/hw): one program per network, owning every hardware-derived number."""

import json

import numpy as np
import pytest
import torch
from conftest import FOLDING_CNN, random_cnn, random_network
from ternac.model.codebook import Coding, TernacError
from ternac.model.convert import quantize_network
from ternac.model.hw import (
    ADDRESS_BITS,
    LOAD_BITS,
    HardwareConfig,
    Target,
    Walk,
    lower,
    mapping_problem,
    plan,
    size_config,
)
from ternac.model.hw.cycles import input_cycles, layer_cycles, output_cycles, pool_cycles
from ternac.model.hw.lower import pack_rows
from torch import nn


def _parse_beats(config, beats):
    """Decode a load stream back into {target: {address: word}} (an independent reader)."""
    memories, i = {t: {} for t in Target}, 0
    while i < len(beats):
        target, address, count = Target(beats[i] >> ADDRESS_BITS), beats[i] & ((1 << ADDRESS_BITS) - 1), beats[i + 1]
        i += 2
        per_word = config.beats_per_word(target)
        for j in range(count):
            chunk = beats[i + j * per_word: i + (j + 1) * per_word]
            memories[target][address + j] = sum(b << (LOAD_BITS * n) for n, b in enumerate(chunk))
        i += count * per_word
    return memories


@pytest.mark.parametrize("sizes,coding,lanes", [([784, 256, 256, 10], (8, 2), 8),
                                                ([37, 5, 9, 3], (5, 3), 2),
                                                ([100, 33, 10], (16, 3), 4)])
def test_program_matches_cycle_formula_and_images(sizes, coding, lanes):
    net = random_network(sizes, coding=coding, lanes=lanes)
    program = lower(net)
    cfg = program.config
    assert cfg == size_config(net)
    assert [d.cycles for d in program.layers] == [layer_cycles(d.words, d.groups, lanes) for d in program.layers]
    assert program.cycles.total == (input_cycles(program.layers[0].words) + sum(d.cycles for d in program.layers)
                                    + output_cycles(program.layers[-1].out_words))
    memories = _parse_beats(cfg, program.load_beats())
    for target, words in program.images.items():
        assert [memories[target][a] for a in range(len(words))] == words
    assert program.layers[-1].last and not any(d.last for d in program.layers[:-1])
    json.dumps(program.summary())                                   # JSON-able as is


def test_784_256_256_10_is_the_documented_program():
    program = lower(random_network([784, 256, 256, 10]))
    assert [(d.words, d.groups, d.cycles) for d in program.layers] == [
        (98, 32, 3154), (32, 32, 1042), (32, 2, 82)]                # docs/architecture.md table
    assert program.cycles.total == 4380
    assert program.cycles.utilization == pytest.approx(268800 / (64 * 4380))


def test_actions_add_up():
    net = random_network([40, 20, 5], lanes=4)
    program = lower(net)
    actions = program.actions()
    steps = sum(d.words * d.groups for d in program.layers)
    assert actions["weight_words_read"] == steps
    assert actions["nonzero_slots"] + actions["idle_slots"] == steps * 4 * net.coding.k
    assert actions["nonzero_slots"] == sum(int(np.count_nonzero(layer.weights())) for layer in net.ternary_layers)


def test_unmappable_network_names_every_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 4, 3), nn.AvgPool2d(4, 1), nn.Flatten(), nn.Linear(4, 3))
    net = quantize_network(model, Coding(8, 2), torch.randn(8, 1, 6, 6), lanes=4)
    problem = mapping_problem(net)
    assert problem.startswith("not mappable: ") and "(avgpool)" in problem and "(relu)" in problem
    with pytest.raises(TernacError, match="not mappable"):
        lower(net)


def test_config_round_trip_and_replace():
    cfg = size_config(random_network([20, 13, 7]))
    assert HardwareConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert HardwareConfig.from_dict(cfg.summary()) == cfg             # derived keys ignored
    assert cfg.replace(act_depth=64).act_depth == 64
    with pytest.raises(TernacError, match="act depth"):
        cfg.replace(act_depth=0)


def test_descriptor_fields_are_documented():
    # docs/format.md section 6 has one row per descriptor field, in the code's order.
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "format.md").read_text()
    table = doc[doc.index("**Layer descriptor fields.**"):doc.index("`size_config(network, lanes)`")]
    documented = [name for row in re.findall(r"^\| (`.*?) \|", table, re.MULTILINE)
                  for name in re.findall(r"`(\w+)`", row)]
    cfg = size_config(random_network([20, 13, 7])).replace(
        codebook_depth=4, code_bits=8, conv_walk=True, fused_pool=True, tap_packing=True,
        avg_pool=True)
    assert documented == [name for name, _, _ in cfg.layer_fields()]


def test_mlp_builds_without_the_convolution_walk():
    net = random_network([20, 13, 7])
    config = size_config(net)
    assert not config.conv_walk
    assert [name for name, _, _ in config.layer_fields()] == [
        "weight_base", "words", "groups", "out_features", "param_base", "in_words", "out_words",
        "pixel_bytes", "relu", "last"]
    with pytest.raises(TernacError, match="need conv_walk"):
        config.replace(fused_pool=True)
    cnn = random_cnn((1, 8, 8), [(6, 3, 1, 1), (5, 3, 1, 0)])
    with pytest.raises(TernacError, match="no convolution walk"):
        lower(cnn, size_config(cnn).replace(conv_walk=False, fused_pool=False, tap_packing=False,
                                            avg_pool=False))


# -- tap packing and fused pooling ------------------------------------------------------------

CNN_32_64 = [(32, 3, 1, 1), ("max", 2, 2), (64, 3, 1, 1), ("max", 2, 2), (10, 7, 1, 0)]


def test_packed_rows_round_trip_and_rule():
    from ternac.model.layout import coded_matrix, packs_taps, uncoded_weight

    assert packs_taps(1, 3, 8) and packs_taps(2, 3, 8) and packs_taps(4, 2, 8)
    assert not packs_taps(3, 3, 8) and not packs_taps(1, 1, 8) and not packs_taps(6, 3, 16)
    w = torch.randn(5, 2, 3, 3)
    m = coded_matrix(w, 8)
    assert m.shape == (5, 3 * 8)                                  # one word per kernel row
    assert torch.equal(m[:, 8:14].reshape(5, 3, 2), w[:, :, 1, :].permute(0, 2, 1))
    assert not m[:, 6:8].any()                                    # row padding is zero
    assert torch.equal(uncoded_weight(m, w.shape, 8), w)
    assert coded_matrix(w, 8, packed=False).shape == (5, 9 * 8)


def test_cnn_32_64_program_packs_fuses_and_reaches_80_percent():
    net = random_cnn((1, 28, 28), CNN_32_64)
    program = lower(net)
    assert program.config.fused_pool and program.config.tap_packing
    names = [(d.name, d.walk.pool, d.walk.window) for d in program.layers]
    assert names == [("0.pack", "pack", (1, 1)), ("0", None, (2, 2)), ("3", None, (2, 2)),
                     ("6", None, (1, 1))]
    pack, conv1, *_ = program.layers
    assert (conv1.words, conv1.groups, conv1.walk.pixels) == (3, 4, 196)   # 3 words, not 9
    # The cycle formula with a window's positions in every group: 4 * 3 words per group.
    assert conv1.cycles == layer_cycles(4 * 3, 196 * 4, 8)
    assert pack.cycles == pool_cycles(28 * 28 * 3) == 28 * 28 * 3 + 3
    assert program.cycles.utilization >= 0.80
    assert program.cycles.total == input_cycles(784) + sum(d.cycles for d in program.layers) + output_cycles(2)


def test_unfusable_pools_stay_separate_passes():
    from ternac.model.hw import plan

    net = random_cnn((1, 8, 8), [(6, 3, 1, 1), ("max", 2, 2), (5, 3, 1, 0)])
    assert [s.walk.fused for s in plan(net, 8)] == [False, True, False]
    assert [s.walk.fused for s in plan(net, 8, fuse_pools=False)] == [False, False, False, False]
    # A negative PReLU multiplier makes the requantizer decreasing: max does not commute.
    conv = net.layers[0]
    conv.neg_mult = conv.mult.astype(np.int64).copy()
    conv.neg_shift = conv.shift.copy()
    conv.neg_mult[2] = -3
    assert [s.walk.pool for s in plan(net, 8)] == ["pack", None, "max", None]
    # A padded pooling cannot be taken on the accumulators either.
    padded = random_cnn((3, 6, 6), [(8, 3, 1, 1)])
    from ternac.model.network import PoolLayer
    padded.layers.append(PoolLayer("p", "max", 8, 6, 6, (3, 3), (2, 2), (1, 1)))
    assert [s.walk.pool for s in plan(padded, 8)] == [None, "max"]


def test_packed_network_needs_tap_packing_hardware_or_the_host():
    # A leading packing pass is the host's on an accelerator without tap packing ...
    net = random_cnn((1, 8, 8), [(6, 3, 1, 1)])
    program = lower(net, size_config(net).replace(tap_packing=False))
    assert program.input_packing == Walk.packing(net.layers[0].conv, 8)
    assert program.summary()["input_packing"] == "host"
    assert [d.name for d in program.layers] == ["0"]
    # ... a later one needs it: the second convolution reads two channels in packed rows.
    net = random_cnn((3, 6, 6), [(2, 1, 1, 0), (5, 3, 1, 1)])
    assert [s.walk.pool for s in plan(net, 8)] == [None, "pack", None]
    config = size_config(net, pack_on_host=True)
    assert config.tap_packing and not lower(net, config).input_packing
    with pytest.raises(TernacError, match="packed rows.*tap packing"):
        lower(net, config.replace(tap_packing=False))


def test_pack_rows_is_the_packing_pass():
    # Word (y, ox): taps kx of input column ox*sx - px + kx, C channels each, zero outside.
    x = np.arange(2 * 3 * 5).reshape(2, 3, 5).astype(np.int8)
    walk = Walk(5, 3, 1, 3, 1, 2, 1, 1, 0, 3, 3, pool="pack", tap_bytes=2)
    packed = pack_rows(x, walk, 8)
    assert packed.shape == (3, 3, 8)
    assert list(packed[1, 0]) == [0, 0, x[0, 1, 0], x[1, 1, 0], x[0, 1, 1], x[1, 1, 1], 0, 0]
    assert list(packed[2, 2]) == [x[0, 2, 3], x[1, 2, 3], x[0, 2, 4], x[1, 2, 4], 0, 0, 0, 0]


def test_activation_buffers_sized_apart_and_checked_per_buffer():
    net = random_cnn(*FOLDING_CNN)
    config = size_config(net, pack_on_host=True)
    assert config.buffer_depths == (144, 36) and config.folded_buffers
    assert size_config(net).buffer_depths == (144, 144)             # the packing pass's output
    with pytest.raises(TernacError, match=r"layer 0 reads 144 .* buffer 0 and writes 36 to buffer 1 \(N=8\): they hold 144 and 35"):
        lower(net, config.replace(act_depths=(144, 35)))
    with pytest.raises(TernacError, match=r"two word counts in 1..act_depth \(144\)"):
        config.replace(act_depths=(145, 36))
