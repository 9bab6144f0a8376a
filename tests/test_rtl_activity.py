"""The RTL's activity counters (Amaranth simulation): per inference they equal the program's
``actions()``, which the energy model charges."""

import numpy as np
import pytest
from conftest import CONV_CASES, random_cnn, random_network
from nets import two_head_network
from ternac.model.codebook import TernacError
from ternac.model.datasets import random_inputs
from ternac.model.hw import lower, size_config
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.simulate import run_rtl_network


@pytest.mark.parametrize("make", [
    lambda: random_network([20, 13, 7]),                                  # padding lanes
    # Writable table; its layer 2 has learned non-zeros in the padding columns of a last
    # sub-vector (30 inputs), which the decoder hands the array like any other.
    lambda: random_network([50, 30, 20, 6], coding=(8, 3), lanes=4, seed=100, codebook_bits=5),
    lambda: random_cnn(*CONV_CASES[5], seed=3),         # row packing, fused max pools, padding taps
    lambda: two_head_network(),                         # max-pooling passes (ceil_mode, padded)
], ids=["mlp", "learned", "cnn-fused-maxpool", "cnn-maxpool-pass"])
def test_activity_counters_equal_the_program_actions(make):
    net = make()
    program = lower(net)
    dut = Accelerator(program.config, activity=True)
    run = run_rtl_network(dut, random_inputs(net, 2, seed=1), program=program,
                          beats=program.load_beats())
    # Both inferences: the counters restart with each one.
    assert run.actions == [program.actions()] * 2


def test_learned_nonzeros_in_padding_columns_are_counted():
    net = random_network([50, 30, 20, 6], coding=(8, 3), lanes=4, seed=100, codebook_bits=5)
    layer = net.ternary_layers[1]
    decoded = int(np.count_nonzero(layer.codebook.decode(layer.codes)))
    assert decoded > int(np.count_nonzero(layer.weights()))        # the case the test above covers
    assert dict(lower(net).pass_actions())[layer.name]["nonzero_slots"] == decoded


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_activity_counters_are_off_by_default_and_not_for_the_dense_baseline():
    config = size_config(random_network([20, 13, 7]))
    assert "activity" not in Accelerator(config).signature.members
    with pytest.raises(TernacError, match="dense baseline"):
        Accelerator(size_config(random_network([20, 13, 7]), dense=True), activity=True)
