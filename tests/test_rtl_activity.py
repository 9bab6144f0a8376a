"""The RTL's activity counters (Amaranth simulation): per inference they equal the program's
``actions()``, which the energy model charges."""

import pytest
from conftest import CONV_CASES, random_cnn, random_network
from ternac.model.codebook import TernacError
from ternac.model.datasets import random_inputs
from ternac.model.hw import lower, size_config
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.simulate import run_rtl_network


@pytest.mark.parametrize("make", [
    lambda: random_network([20, 13, 7]),                                  # padding lanes
    lambda: random_network([24, 10, 5], coding=(8, 3), lanes=4, codebook_bits=5),  # writable table
    lambda: random_cnn(*CONV_CASES[5], seed=3),                           # conv, max pool, padding taps
], ids=["mlp", "learned", "cnn-maxpool"])
def test_activity_counters_equal_the_program_actions(make):
    net = make()
    program = lower(net)
    dut = Accelerator(program.config, activity=True)
    run = run_rtl_network(dut, random_inputs(net, 2, seed=1), program=program,
                          beats=program.load_beats())
    # Both inferences: the counters restart with each one.
    assert run.actions == [program.actions()] * 2


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_activity_counters_are_off_by_default_and_not_for_the_dense_baseline():
    config = size_config(random_network([20, 13, 7]))
    assert "activity" not in Accelerator(config).signature.members
    with pytest.raises(TernacError, match="dense baseline"):
        Accelerator(size_config(random_network([20, 13, 7]), dense=True), activity=True)
