"""Convolutions on the generated Verilog: random conv geometries bit- and cycle-exact on
Verilator and Icarus, average pooling on random maps, and planted address-generator and
average-divisor bugs that the bench catches."""

import functools

import numpy as np
import pytest
from amaranth.hdl import Signal
from conftest import AVG_CASES, CONV_CASES, FOLDING_CNN, random_cnn
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
from ternac.cosim.ecp5_sim import build_ecp5_accelerator
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


def _steps(nets, config, samples, seeds=None):
    steps, inputs = [], []
    for i, net in enumerate(nets):
        program = lower(net, config)
        x = random_inputs(net, samples, seed=i if seeds is None else seeds[i])
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
    _check(run_rtl_program(build_accelerator(config, sim=sim), steps).output, nets, inputs, config)


@pytest.mark.parametrize("sim,cases", [("verilator", None), ("icarus", [PACKED_FUSED])])
def test_random_convolutions_row_serial_layer_table(conv_nets, sim, cases):
    # The same networks loaded one after the other into one build whose layer table holds
    # 32-bit rows (HardwareConfig.serial_layers): every reload makes the sequencer fetch
    # descriptor 0 again, every pass ends with the next descriptor's fetch.
    nets, config = conv_nets
    config = config.replace(serial_layers=True)
    assert config.layer_rows > 1
    nets = nets if cases is None else [nets[i] for i in cases]
    steps, inputs = _steps(nets, config, samples=2)
    _check(run_rtl_program(build_accelerator(config, sim=sim), steps).output, nets, inputs, config)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_input_packed_by_the_host_in_folded_buffers(conv_nets, sim):
    # The two cases that pack a first layer's rows, and a 12x12 one, on one build without tap
    # packing: the host sends their inputs packed, and the 144-word input map and the other
    # maps (at most 112 words) share one 256-word memory, buffer 1 from the top down.
    nets, _ = conv_nets
    nets = [nets[1], nets[PACKED_FUSED], random_cnn(*FOLDING_CNN, lanes=8, seed=4)]
    config = union_config([size_config(net, pack_on_host=True) for net in nets])
    assert not config.tap_packing and config.folded_buffers and config.act_memory_depth == 256
    assert all(lower(net, config).input_packing for net in nets)
    steps, inputs = _steps(nets, config, samples=2)
    _check(run_rtl_program(build_accelerator(config, sim=sim), steps).output, nets, inputs, config)


def test_random_convolutions_weight_register(conv_nets):
    # The register the ECP5 builds put between the memory reads and the MAC array: one more
    # cycle from issue to latch, in the cycle model and in every pass the probe measures. As on
    # the ECP5, the weights' register is the DP16KD blocks' output register (rtl/ecp5_bram.py).
    nets, config = conv_nets
    config = config.replace(weight_register=True)
    steps, inputs = _steps(nets, config, samples=2)
    _check(run_rtl_program(build_ecp5_accelerator(config, sim="verilator"), steps).output, nets, inputs, config)


def _check(out, nets, inputs, config):
    infers = [step for step in out["steps"] if step["op"] == "infer"]
    assert len(infers) == len(nets)
    for step, net, x in zip(infers, nets, inputs):
        np.testing.assert_array_equal(np.array(step["outputs"]), golden_outputs(net, x))
        report = lower(net, config).cycles
        assert step["measured"] == step["onchip"] == [report.total] * len(x)
        assert step["layer_cycles"] == [[report.input, *(c for _, c in report.layers), report.output]] * len(x)
        assert step["actions"] == [lower(net, config).actions()] * len(x)    # activity counters


@pytest.mark.parametrize("sim,cases", [("verilator", AVG_CASES), ("icarus", AVG_CASES[-1:])])
def test_avg_pooling_random_maps(conv_nets, sim, cases):
    # Random inputs (constant maps hide a wrong divisor): every border of k2 s2, k3 s2 p1 and
    # ceil_mode windows, count_include_pad both ways, on the same build as the conv cases.
    nets, config = conv_nets
    nets = [nets[case] for case in cases]
    steps, inputs = _steps(nets, config, samples=7, seeds=cases)
    _check(run_rtl_program(build_accelerator(config, sim=sim), steps).output, nets, inputs, config)


class PlantedAccelerator(Accelerator):
    """The accelerator with a planted :class:`Sequencer` subclass in place of the real one."""

    def __init__(self, config, *, sequencer):
        self._planted = sequencer
        super().__init__(config)

    def elaborate(self, platform):
        original = accelerator.Sequencer
        accelerator.Sequencer = self._planted
        try:
            return super().elaborate(platform)
        finally:
            accelerator.Sequencer = original


def _planted_accelerator(hardware, *, sequencer):
    return PlantedAccelerator(HardwareConfig.from_dict(hardware), sequencer=sequencer)


def planted(sequencer):
    """A ``build_design`` factory of the accelerator with ``sequencer`` planted."""
    return functools.partial(_planted_accelerator, sequencer=sequencer)


class PaddingIgnoredSequencer(Sequencer):
    """Planted bug: a tap in the zero padding reads word 0 of the map instead of zeros."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.act_zero.eq(0)
        return m


class PaddingUncountedSequencer(Sequencer):
    """Planted bug: an average pooling's divisor never counts padding taps (count_include_pad
    ignored), so a window at a padded border divides by too few."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.pool_counted.eq(~self.act_zero)
        return m


def test_planted_padding_bug_is_caught(conv_nets):
    nets, config = conv_nets
    net = nets[0]                                    # 3x3 kernel, padding 1
    design = build_design(planted(PaddingIgnoredSequencer), {"hardware": config.to_dict()},
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


def test_planted_window_walk_bug_is_caught(conv_nets):
    nets, config = conv_nets
    net = nets[PACKED_FUSED]
    assert any(d.walk.fused for d in lower(net, config).layers)
    design = build_design(planted(WindowRowSequencer), {"hardware": config.to_dict()},
                          sim="verilator", toplevel=TOPLEVEL)
    steps, _ = _steps([net], config, samples=2)
    with pytest.raises(CosimFailure, match=r"values differ .* first at sample 0"):
        run_rtl_program(design, steps, name="planted-window-row")


def test_planted_avg_border_count_bug_is_caught(conv_nets):
    nets, config = conv_nets
    case = AVG_CASES[1]                              # k3 s2 p1, count_include_pad
    design = build_design(planted(PaddingUncountedSequencer), {"hardware": config.to_dict()},
                          sim="verilator", toplevel=TOPLEVEL)
    steps, _ = _steps([nets[case]], config, samples=5, seeds=[case])
    with pytest.raises(CosimFailure, match=r"values differ .* first at sample"):
        run_rtl_program(design, steps, name="planted-avg-count")
    # The same bench passes the correct design (the failure is the bug's, not the bench's).
    run_rtl_program(build_accelerator(config, sim="verilator"), steps, name="clean-avg-count")


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
