"""Whole networks through the Accelerator in Amaranth's simulator: every output equal to the
golden reference, every cycle count equal to the cycle model."""

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator
from conftest import AVG_CASES, CONV_CASES, FOLDING_CNN, random_cnn, random_network
from nets import two_head_network
from ternac.model.codebook import Coding, TernacError
from ternac.model.convert import quantize_network
from ternac.model.hw import lower, size_config
from ternac.model.hw.status import LOAD_PORT_LAG
from ternac.model.reference import golden_network
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.dense_baseline import DenseBaseline
from ternac.rtl.simulate import run_rtl_network
from torch import nn


def random_inputs(network, count, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (count, int(np.prod(network.input_shape))))
    x[0] = 127                                                  # saturating extremes
    x[-1] = -128
    return x.astype(np.int8)


def run_rtl_checked(network, x, *, dense=False, load=True, stall=0.0, seed=0, head=None,
                    serial_layers=False, weight_register=False, pack_on_host=False):
    """Run ``x`` through the RTL and compare outputs and cycles with the golden model."""
    config = size_config(network, dense=dense, head=head, serial_layers=serial_layers,
                         weight_register=weight_register, pack_on_host=pack_on_host)
    program = lower(network, config, dense=dense, head=head)
    if load:
        dut, beats = (DenseBaseline if dense else Accelerator)(program.config), program.load_beats()
    else:
        dut, beats = Accelerator.for_program(program), []
    expect = program.cycles.total
    run = run_rtl_network(dut, x, program=program, beats=beats, stall=stall, seed=seed,
                          timeout_cycles=20 * expect + 10_000)   # same bound as the cocotb bench
    golden = golden_network(network, x)
    golden = golden[head or 0] if network.heads else golden
    np.testing.assert_array_equal(run.outputs, golden.reshape(len(x), -1))
    assert run.cycles == run.measured                           # the counter sees what the host sees
    if stall == 0:
        assert run.cycles == [expect] * len(x)
    return run


@pytest.mark.parametrize("sizes,coding,lanes", [
    ([20, 13, 7], (8, 2), 8),           # V < P: the shadow bank stall
    ([20, 13, 7], (4, 2), 3),           # P divides neither O nor N
    ([37, 5, 9, 3], (5, 3), 2),         # fan-in not a multiple of N, N not a power of two
    ([16, 40, 24], (8, 1), 16),         # O < P in the first layer's last group
    ([64, 32, 10], (16, 3), 4),         # 13-bit codes
    ([9, 1], (2, 1), 1),                # one lane, one output
    ([6, 12, 5], (8, 2), 4),            # one input word: INPUT waits only for its write
])
def test_random_networks_bit_and_cycle_exact(sizes, coding, lanes):
    network = random_network(sizes, coding=coding, lanes=lanes, seed=sum(sizes))
    run_rtl_checked(network, random_inputs(network, 3))


@pytest.mark.parametrize("seed", range(4))
def test_random_single_layers(seed):
    rng = np.random.default_rng(seed)
    fan_in, fan_out = int(rng.integers(1, 60)), int(rng.integers(1, 40))
    coding = [(8, 2), (4, 1), (6, 2), (3, 3)][seed]
    lanes = int(rng.integers(1, 12))
    network = random_network([fan_in, fan_out], coding=coding, lanes=lanes, seed=seed)
    run_rtl_checked(network, random_inputs(network, 2, seed), load=bool(seed % 2))


def test_back_pressure_and_gaps_keep_results():
    network = random_network([30, 17, 6], coding=(4, 2), lanes=3, seed=5)
    run_rtl_checked(network, random_inputs(network, 3), stall=0.4, seed=7)


def test_learned_codebook_through_writable_table():
    network = random_network([30, 12, 5], coding=(8, 2), lanes=4, seed=2, codebook_bits=4)
    assert size_config(network).codebook_depth == 32
    run_rtl_checked(network, random_inputs(network, 2), stall=0.2)


def test_dense_baseline_same_outputs_and_cycles():
    network = random_network([23, 11, 7], coding=(4, 2), lanes=3, seed=4)
    run = run_rtl_checked(network, random_inputs(network, 2), dense=True)
    ternary = run_rtl_checked(network, random_inputs(network, 2))
    assert run.cycles == ternary.cycles


def test_fused_relu_and_flatten_layers():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 9), nn.Linear(9, 4), nn.ReLU())
    network = quantize_network(model, Coding(4, 2), torch.randn(64, 3, 4), lanes=2)
    run_rtl_checked(network, random_inputs(network, 2))


def test_unsupported_layers_and_misfits_raise():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AvgPool2d(4), nn.Flatten(), nn.Linear(4, 3))
    conv = quantize_network(model, Coding(8, 2), torch.randn(8, 1, 6, 6), lanes=4)
    with pytest.raises(TernacError, match=r"not mappable: layer .* \(avgpool\): average pooling runs "
                                          r"on the accelerator for windows of up to 9 values \(3x3\), not 4x4"):
        size_config(conv)
    avg = quantize_network(model[:2].append(nn.AvgPool2d(2)), Coding(8, 2), torch.randn(8, 1, 4, 4), lanes=4)
    with pytest.raises(TernacError, match=r"layer 2 is an average pooling: the accelerator's pooling "
                                          r"unit has no average combine \(avg_pool=False\)"):
        lower(avg, size_config(avg).replace(avg_pool=False))
    pooled = quantize_network(model[:2].append(nn.MaxPool2d(2)), Coding(8, 2), torch.randn(8, 1, 4, 4), lanes=4)
    fused = size_config(pooled)
    assert fused.fused_pool and not fused.max_pool          # the pooling unit has no max combine
    with pytest.raises(TernacError, match=r"layer 2 is a max pooling: the accelerator's pooling "
                                          r"unit has no max combine \(max_pool=False\)"):
        lower(pooled, fused.replace(fused_pool=False, layer_depth=8))   # not fused: a max-pooling pass
    network = random_network([40, 20, 5], lanes=4)
    config = size_config(network)
    with pytest.raises(TernacError, match="activation words"):
        lower(network, config.replace(act_depth=3))
    with pytest.raises(TernacError, match="weight buffer"):
        lower(network, config.replace(weight_depth=10))


def test_utilization_784_256_256_10_model_and_rtl():
    """The acceptance network: P=8, (8,2). Cycle model and RTL agree; >= 90 % of P*N MACs/cycle."""
    network = random_network([784, 256, 256, 10], coding=(8, 2), lanes=8, seed=0)
    report = lower(network).cycles
    assert sum(report.macs) == 268800 and sum(report.macs) / 64 == 4200
    assert report.total == 4380         # 99 + 3154 + 1042 + 82 + 3 (docs/architecture.md)
    assert report.utilization >= 0.95      # 0.9589: a cycle per pass for the split shift, one per
    #                                        pass and one for the input for the buffer write register
    run_rtl_checked(network, random_inputs(network, 1), load=False)


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("lanes", [4, 8])
def test_random_convolutions_bit_and_cycle_exact(case, lanes):
    shape, convs, classes = CONV_CASES[case]
    network = random_cnn(shape, convs, classes, lanes=lanes, seed=case)
    run_rtl_checked(network, random_inputs(network, 2))


@pytest.mark.parametrize("case", [1, 5, 7])
def test_row_serial_layer_table_bit_and_cycle_exact(case):
    # Descriptors of 6 to 8 rows, each read one row per cycle after the pass before it.
    shape, convs, classes = CONV_CASES[case]
    network = random_cnn(shape, convs, classes, lanes=4, seed=case)
    config = size_config(network, serial_layers=True)
    passes = len(lower(network, config).cycles.layers)
    assert config.layer_rows > 1 and passes > 1
    assert (lower(network, config).cycles.total - lower(network).cycles.total
            == (passes - 1) * config.layer_rows)
    run_rtl_checked(network, random_inputs(network, 2), serial_layers=True)


def test_row_serial_layer_table_takes_input_once_descriptor_0_is_fetched():
    # The last load beat (a descriptor row) at cycle b reaches the load port at b+L
    # (L = LOAD_PORT_LAG) and is written at b+L+1; descriptor 0 is then fetched from row 0
    # again (address at b+L+2, rows arriving b+L+3 .. b+L+R+2): act_in, offered all along,
    # is taken at b+L+R+3 and not a cycle earlier.
    network = random_cnn(*CONV_CASES[5], lanes=4, seed=5)
    program = lower(network, size_config(network, serial_layers=True))
    dut, beats, rows = Accelerator(program.config), program.load_beats(), program.config.layer_rows
    words = program.input_stream(random_inputs(network, 1)[0])
    taken = {}

    async def bench(ctx):
        for cycle, beat in enumerate(beats):
            ctx.set(dut.load.valid, 1)
            ctx.set(dut.load.payload, beat)
            ctx.set(dut.act_in.valid, cycle > 0)
            ctx.set(dut.act_in.payload, words[0])
            _, _, ready, in_ready = await ctx.tick().sample(dut.load.ready, dut.act_in.ready)
            assert ready and not in_ready
        ctx.set(dut.load.valid, 0)
        for cycle in range(len(beats), len(beats) + 4 * rows):
            _, _, in_ready = await ctx.tick().sample(dut.act_in.ready)
            if in_ready:
                taken["cycle"] = cycle
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert rows > 1 and taken == {"cycle": len(beats) - 1 + LOAD_PORT_LAG + rows + 3}


@pytest.mark.parametrize("case", [5, 7])
def test_weight_register_bit_and_cycle_exact(case):
    # Seven more cycles in a ternary pass (four from issue to latch, three from the shadow
    # bank to the requantizer's output), one in a packing or pooling pass and in the output phase (the
    # registered activation read), with the row-serial table too.
    shape, convs, classes = CONV_CASES[case]
    network = random_cnn(shape, convs, classes, lanes=4, seed=case)
    config = size_config(network, weight_register=True)
    plain, registered = lower(network).cycles, lower(network, config).cycles
    assert ([b - a for (_, a), (_, b) in zip(plain.layers, registered.layers)]
            == [7 if macs else 1 for macs in plain.macs])
    assert registered.output - plain.output == 1
    run_rtl_checked(network, random_inputs(network, 2), weight_register=True, serial_layers=case == 7)


@pytest.mark.parametrize("case", [1, 5, "folding"])
def test_input_packed_by_the_host_bit_and_cycle_exact(case):
    # No packing pass: the host sends the packed map (stride 2 and padding 2 in case 1), the
    # first convolution reads it from buffer 0; buffer 1 sized for its own maps only.
    shape, convs, classes = FOLDING_CNN if case == "folding" else CONV_CASES[case]
    network = random_cnn(shape, convs, classes, lanes=4, seed=3)
    config = size_config(network, pack_on_host=True)
    program = lower(network, config)
    on_chip = lower(network)
    assert program.input_packing and not config.tap_packing
    assert on_chip.layers[0].walk.pool == "pack" and program.layers == on_chip.layers[1:] or case == "folding"
    pack = on_chip.layers[0].walk
    assert program.input_words == pack.out_w * pack.in_h <= on_chip.input_words  # fewer at stride 2
    assert (on_chip.cycles.total - program.cycles.total
            == on_chip.layers[0].cycles + on_chip.cycles.input - program.cycles.input)
    if case == "folding":
        assert config.folded_buffers and config.buffer_depths == (144, 36) and config.act_memory_depth == 256
    run = run_rtl_checked(network, random_inputs(network, 2), pack_on_host=True, serial_layers=case == 5)
    assert run.cycles == [lower(network, config.replace(serial_layers=case == 5)).cycles.total] * 2


def test_weight_register_dense_baseline_and_back_pressure():
    network = random_network([37, 5, 9, 3], coding=(5, 3), lanes=2, seed=1)
    run_rtl_checked(network, random_inputs(network, 3), weight_register=True, dense=True)
    run_rtl_checked(network, random_inputs(network, 4), weight_register=True, stall=0.3, seed=3)


def test_row_serial_layer_table_under_back_pressure():
    network = random_network([37, 5, 9, 3], coding=(5, 3), lanes=2, seed=1)
    run_rtl_checked(network, random_inputs(network, 4), serial_layers=True, stall=0.3, seed=3)


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pooling_bit_and_cycle_exact(case):
    # Random maps (a constant one hides a wrong divisor), every border: padding, ceil_mode
    # overhang, count_include_pad both ways.
    shape, convs, classes = CONV_CASES[case]
    network = random_cnn(shape, convs, classes, lanes=8, seed=case)
    run_rtl_checked(network, random_inputs(network, 7, seed=case))


@pytest.mark.parametrize("head", [0, 1])
def test_two_head_cnn_every_head(head):
    # BatchNorm, PReLU, LeakyReLU, ceil_mode padded max pooling, x.view(x.size(0), -1), two
    # heads: each head is one program (trunk, then that head), bit- and cycle-exact.
    network = two_head_network()
    run_rtl_checked(network, random_inputs(network, 2), head=head)
