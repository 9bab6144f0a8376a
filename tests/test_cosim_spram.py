"""The accelerator with its weight buffer in iCE40 SPRAM, signed off like the portable one.

The Verilog instantiates four ``SB_SPRAM256KA`` (P = 8, (8,2): 64-bit weight words); Verilator
and Icarus simulate them with Yosys' own model of the primitive. Networks are loaded through
``load`` (SPRAM has no initial contents), then every output is compared with the golden model
and every inference's cycles with the cycle model, exactly.
"""

import pytest
from amaranth.back import verilog
from conftest import random_network
from ternac.cosim.accelerator_sim import (
    capacity_config,
    golden_infer_step,
    golden_load_step,
    random_inputs,
    run_rtl_program,
)
from ternac.cosim.spram_sim import build_spram_accelerator
from ternac.model.codebook import TernacError
from ternac.model.hw import Target, lower
from ternac.rtl.spram import SpramWeightBuffer, spram_weight_memory

CONFIG = capacity_config(8, (8, 2), act_depth=16, weight_depth=512, param_depth=512)


def _program(sizes_list, samples):
    steps = []
    for i, sizes in enumerate(sizes_list):
        net = random_network(sizes, seed=200 + i)
        steps.append(golden_load_step(lower(net, CONFIG), seed=i))
        steps.append(golden_infer_step(net, lower(net, CONFIG), random_inputs(net, samples, seed=i),
                                       check_cycles=True, layer_cycles=True, first_sample=0))
    return steps


@pytest.mark.cosim
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_spram_accelerator_bit_and_cycle_exact(sim):
    design = build_spram_accelerator(CONFIG, sim=sim)
    # Two networks on one build: the second load overwrites the first one's weights.
    samples = 6 if sim == "verilator" else 3
    result = run_rtl_program(design, _program([[100, 64, 32, 10], [33, 17, 8]], samples),
                             name=f"spram-{sim}", label="spram")
    infers = [s for s in result.output["steps"] if s["op"] == "infer"]
    assert [len(s["outputs"]) for s in infers] == [samples, samples]
    assert result.output["mismatches"] == 0 and not result.output["problems"]
    assert result.output["checked"] > 0


def test_spram_verilog_instantiates_the_primitive():
    text = verilog.convert(SpramWeightBuffer(depth=4224, width=64, primitive=True), name="wb")
    assert text.count("SB_SPRAM256KA ") == 4
    portable = verilog.convert(SpramWeightBuffer(depth=4224, width=64, primitive=False), name="wb")
    assert "SB_SPRAM256KA" not in portable


def test_spram_refuses_baked_weights_and_oversize():
    net = random_network([20, 13])
    config = capacity_config(8, (8, 2), act_depth=4, weight_depth=64, param_depth=64)
    image = lower(net, config).images
    with pytest.raises(TernacError, match="no initial contents"):
        spram_weight_memory(config, image[Target.WEIGHTS])
    assert len(spram_weight_memory(config, []).read.data) == config.weight_bits
    with pytest.raises(TernacError, match="16384 words"):
        SpramWeightBuffer(depth=20000, width=64)
