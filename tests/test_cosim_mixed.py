"""Mixed per-layer codings on the generated Verilog: Verilator and Icarus against the golden
model, every output and every inference's (and layer's) cycles; a planted table-base bug.

Builds (cached under ``build/cosim`` by the Verilog's hash):

* ``k8``: 4 lanes, (8,8) default-codebook ROM (13-bit codes): edge-coded networks (first and
  last layers (8,8), others (8,2)) and an (8,1)+(8,2) one run on the one build;
* ``k2``: the P=8 (8,2) ROM build of ``test_cosim_accelerator.py`` (shared): (8,1)+(8,2);
* ``table``: 4 lanes, (8,2), a 256-entry writable decoder table, 8-bit codes: a learned
  codebook in one layer only, the others in the shared default table.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import random_cnn, random_network
from ternac.cosim.accelerator_sim import (
    TOPLEVEL,
    build_accelerator,
    capacity_config,
    golden_infer_step,
    golden_load_step,
    golden_outputs,
    random_inputs,
    run_rtl_program,
)
from ternac.cosim.runner import CosimFailure, build_design
from ternac.model.codebook import Codebook, Coding
from ternac.model.hw import HardwareConfig, lower
from ternac.model.network import TernaryLayer
from ternac.rtl.accelerator import Accelerator

pytestmark = pytest.mark.cosim

DEPTHS = {"act_depth": 64, "weight_depth": 512, "param_depth": 512}
CONFIGS = {
    "k8": capacity_config(lanes=4, coding=(8, 8), **DEPTHS),
    "k2": capacity_config(lanes=8, coding=(8, 2), act_depth=16, weight_depth=512, param_depth=512),
    "table": capacity_config(lanes=4, coding=(8, 2), codebook_depth=256, code_bits=8, **DEPTHS),
}
EDGE = [(8, 8), (8, 2), (8, 8)]
CNN = ((3, 8, 8), [(6, 3, 1, 1), ("max", 2, 2), (10, 3, 1, 0)], 4)     # conv, pool, conv, Linear


def networks(build):
    """The mixed-coding networks run on one build."""
    if build == "k8":
        return [random_network([40, 30, 20, 7], codings=EDGE, lanes=4, seed=1),
                random_cnn(*CNN, lanes=4, seed=2, codings=EDGE),
                random_network([30, 20, 6], codings=[(8, 1), (8, 2)], lanes=4, seed=3)]
    if build == "k2":
        return [random_network([64, 24, 9], codings=[(8, 1), (8, 2)], lanes=8, seed=4),
                random_network([33, 17, 12, 8], codings=[(8, 2), (8, 1), (8, 2)], lanes=8, seed=5)]
    return [random_network([30, 20, 11, 6], codings=[(8, 2), (8, 2, 5), (8, 1)], lanes=4, seed=6),
            random_cnn(*CNN, lanes=4, seed=7, codings=[(8, 1), (8, 2, 4), (8, 2)])]


def program_steps(nets, config, samples):
    steps, inputs = [], []
    for i, net in enumerate(nets):
        program = lower(net, config)
        x = random_inputs(net, samples, seed=i)
        steps += [golden_load_step(program), golden_infer_step(net, program, x, layer_cycles=True)]
        inputs.append(x)
    return steps, inputs


def check_outputs(output, nets, inputs, config):
    infers = [step for step in output["steps"] if step["op"] == "infer"]
    assert len(infers) == len(nets) and output["mismatches"] == 0 and not output["problems"]
    for step, net, x in zip(infers, nets, inputs):
        np.testing.assert_array_equal(np.array(step["outputs"]), golden_outputs(net, x))
        report = lower(net, config).cycles
        assert step["measured"] == step["onchip"] == [report.total] * len(x)
        assert step["layer_cycles"] == [[report.input, *(c for _, c in report.layers),
                                          report.output]] * len(x)


@pytest.mark.parametrize("build,sim", [("k8", "verilator"), ("k2", "verilator"), ("k2", "icarus"),
                                       ("table", "verilator")])
def test_mixed_codings(build, sim):
    config, nets = CONFIGS[build], networks(build)
    nets = nets[:1] if sim == "icarus" else nets
    steps, inputs = program_steps(nets, config, samples=3)
    out = run_rtl_program(build_accelerator(config, sim=sim), steps).output
    check_outputs(out, nets, inputs, config)


class BaseIgnoredAccelerator(Accelerator):
    """Planted bug: the decoder reads every layer's codes from table entry 0 (the descriptor's
    ``codebook_base`` ignored), so the learned layer decodes through the default table."""

    def _make_array(self):
        self._planted_array = super()._make_array()
        return self._planted_array

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self._planted_array.table_base.eq(0)
        return m


def base_ignored_accelerator(hardware):
    return BaseIgnoredAccelerator(HardwareConfig.from_dict(hardware))


def test_planted_table_base_bug_is_caught():
    config, net = CONFIGS["table"], networks("table")[0]
    assert [d.codebook_base for d in lower(net, config).layers] == [0, 129, 0]
    design = build_design(base_ignored_accelerator, {"hardware": config.to_dict()},
                          sim="verilator", toplevel=TOPLEVEL)
    steps, (x,) = program_steps([net], config, samples=2)
    with pytest.raises(CosimFailure, match=r"values differ .*; first at sample 0, layer 2") as failure:
        run_rtl_program(design, steps, name="planted-table-base")
    # Exactly the mutant's arithmetic: the learned layer's codes decoded as default (8,2) codes.
    default = Codebook.default(Coding(8, 2))
    mutated = replace(net, layers=[replace(layer, codebook=default) if isinstance(layer, TernaryLayer)
                                   else layer for layer in net.layers])
    infer = failure.value.result.output["steps"][-1]
    np.testing.assert_array_equal(np.array(infer["outputs"]), golden_outputs(mutated, x))
