"""Convolutions on the generated Verilog: random conv geometries bit- and cycle-exact on
Verilator and Icarus, and a planted address-generator bug that the bench catches."""

import numpy as np
import pytest
from amaranth.hdl import Signal
from conftest import CONV_CASES, random_cnn
from ternac.cosim.accelerator_sim import (
    TOPLEVEL,
    build_accelerator,
    golden_infer_step,
    golden_load_step,
    golden_outputs,
    random_inputs,
    run_rtl_program,
    sim_network,
    union_config,
)
from ternac.cosim.runner import CosimFailure, build_design
from ternac.model.hw import HardwareConfig, lower, size_config
from ternac.rtl import accelerator
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.sequencer import Sequencer

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def conv_nets():
    nets = [random_cnn(shape, convs, classes, lanes=8, seed=10 + i)
            for i, (shape, convs, classes) in enumerate(CONV_CASES)]
    return nets, union_config([size_config(net) for net in nets])


def _steps(nets, config, samples):
    steps, inputs = [], []
    for i, net in enumerate(nets):
        program = lower(net, config)
        x = random_inputs(net, samples, seed=i)
        steps += [golden_load_step(program), golden_infer_step(net, program, x, layer_cycles=True)]
        inputs.append(x)
    return steps, inputs


#: The case that packs a 1-channel first layer's rows and fuses both max poolings.
PACKED_FUSED = 5


@pytest.mark.parametrize("sim,cases", [("verilator", None), ("icarus", [PACKED_FUSED])])
def test_random_convolutions(conv_nets, sim, cases):
    nets, config = conv_nets
    nets = nets if cases is None else [nets[i] for i in cases]
    steps, inputs = _steps(nets, config, samples=3)
    out = run_rtl_program(build_accelerator(config, sim=sim), steps).output
    infers = [step for step in out["steps"] if step["op"] == "infer"]
    for step, net, x in zip(infers, nets, inputs):
        np.testing.assert_array_equal(np.array(step["outputs"]), golden_outputs(net, x))
        report = lower(net, config).cycles
        assert step["measured"] == step["onchip"] == [report.total] * len(x)
        assert step["layer_cycles"] == [[report.input, *(c for _, c in report.layers), report.output]] * len(x)
        assert step["actions"] == [lower(net, config).actions()] * len(x)    # activity counters


class PaddingIgnoredSequencer(Sequencer):
    """Planted bug: a tap in the zero padding reads word 0 of the map instead of zeros."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.act_zero.eq(0)
        return m


class PaddingIgnoredAccelerator(Accelerator):
    def elaborate(self, platform):
        original = accelerator.Sequencer
        accelerator.Sequencer = PaddingIgnoredSequencer
        try:
            return super().elaborate(platform)
        finally:
            accelerator.Sequencer = original


def padding_ignored_accelerator(hardware):
    return PaddingIgnoredAccelerator(HardwareConfig.from_dict(hardware))


def test_planted_padding_bug_is_caught(conv_nets):
    nets, config = conv_nets
    net = nets[0]                                    # 3x3 kernel, padding 1
    design = build_design(padding_ignored_accelerator, {"hardware": config.to_dict()},
                          sim="verilator", toplevel=TOPLEVEL)
    steps, _ = _steps([net], config, samples=2)
    with pytest.raises(CosimFailure, match=r"values differ .* first at sample 0"):
        run_rtl_program(design, steps, name="planted-padding")
    # The same bench passes the correct design (the failure is the bug's, not the bench's).
    run_rtl_program(build_accelerator(config, sim="verilator"), steps, name="clean-padding")


class WindowRowSequencer(Sequencer):
    """Planted bug: a fused pooling window's second row starts one column on from its first
    row's last position instead of one row down (``win_y_jump`` read as ``win_x_step``)."""

    def elaborate(self, platform):
        port = self.layer
        self.layer = patched = Signal.like(port)
        try:
            m = super().elaborate(platform)
        finally:
            self.layer = port
        m.d.comb += [patched.eq(port), patched.win_y_jump.eq(port.win_x_step)]
        return m


class WindowRowAccelerator(Accelerator):
    def elaborate(self, platform):
        original = accelerator.Sequencer
        accelerator.Sequencer = WindowRowSequencer
        try:
            return super().elaborate(platform)
        finally:
            accelerator.Sequencer = original


def window_row_accelerator(hardware):
    return WindowRowAccelerator(HardwareConfig.from_dict(hardware))


def test_planted_window_walk_bug_is_caught(conv_nets):
    nets, config = conv_nets
    net = nets[PACKED_FUSED]
    assert any(d.walk.fused for d in lower(net, config).layers)
    design = build_design(window_row_accelerator, {"hardware": config.to_dict()},
                          sim="verilator", toplevel=TOPLEVEL)
    steps, _ = _steps([net], config, samples=2)
    with pytest.raises(CosimFailure, match=r"values differ .* first at sample 0"):
        run_rtl_program(design, steps, name="planted-window-row")


@pytest.mark.parametrize("head", [0, 1])
def test_two_head_cnn_on_verilator(head):
    # BatchNorm folded, PReLU and LeakyReLU in the requantizer, ceil_mode padded max pooling,
    # x.view(x.size(0), -1) into a Linear (a map-sized conv), two heads: one program each.
    from nets import two_head_network

    net = two_head_network()
    x = random_inputs(net, 4, seed=head)
    run = sim_network(net, x, sim="verilator", head=head, strict=True, name=f"two-head-{head}")
    assert run.bit_exact and run.cycles_exact and run.actions_exact
    np.testing.assert_array_equal(run.outputs, golden_outputs(net, x, head))
