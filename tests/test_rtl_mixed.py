"""Networks whose layers use different codings, through the Accelerator in Amaranth's simulator:
every output equal to the golden reference, every cycle count equal to the cycle model.

The array is built for the largest K (smaller-K layers leave slots idle), codes are stored at
the widest code width; default codebooks decode in the (N, K_max) ROM (the canonical order is
prefix-closed in K), learned ones in the writable table at each layer's ``codebook_base``.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import random_cnn, random_network
from ternac.model.codebook import Codebook, Coding, TernacError, canonical_patterns
from ternac.model.hw import decoder_tables, default_table, lower, size_config
from ternac.model.network import TernaryLayer
from ternac.model.reference import golden_network
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.mac_array import TernaryMacArray
from ternac.rtl.simulate import run_rtl_network
from test_rtl_accelerator import random_inputs, run_rtl_checked

EDGE = [(8, 8), (8, 2), (8, 8)]                 # `ternac train --edge-coding 8,8`


def test_default_codebooks_are_prefixes_of_larger_k():
    # Why one (N, K_max) ROM decodes every default (N, K <= K_max) code unchanged.
    for n in (2, 4, 5, 8):
        for k in range(n):
            small, large = canonical_patterns(Coding(n, k)), canonical_patterns(Coding(n, k + 1))
            np.testing.assert_array_equal(large[:len(small)], small)
    narrow, wide = Codebook.default(Coding(8, 1)), Codebook.default(Coding(8, 8))
    assert wide.slot_table()[:len(narrow)] == narrow.slot_table()


@pytest.mark.parametrize("codings,coding,code_bits", [
    (EDGE, (8, 8), 13),                         # first and last layers dense ternary
    ([(8, 1), (8, 2), (8, 1)], (8, 2), 8),
    ([(4, 2), (4, 1)], (4, 2), 6),
])
def test_default_codebook_mixes_run_on_the_largest_k_rom(codings, coding, code_bits):
    sizes = [30, 20, 11, 6][:len(codings) + 1]
    network = random_network(sizes, codings=codings, lanes=4, seed=len(codings))
    config = size_config(network)
    assert (config.coding, config.code_bits, config.codebook_depth) == (Coding(*coding), code_bits, 0)
    run_rtl_checked(network, random_inputs(network, 3))


def test_learned_codebook_in_one_layer_only():
    network = random_network([30, 20, 11, 6], codings=[(8, 2), (8, 2, 5), (8, 1)], lanes=3, seed=7)
    program = lower(network)
    # One shared default (8,2) table (the (8,1) layer uses its prefix), then the learned one.
    assert program.config.codebook_depth == 129 + 32
    assert [d.codebook_base for d in program.layers] == [0, 129, 0]
    run_rtl_checked(network, random_inputs(network, 2), stall=0.2)


def test_learned_codebook_of_larger_k_widens_the_array():
    network = random_network([30, 20, 6], codings=[(8, 8, 6), (8, 1)], lanes=4, seed=8)
    config = size_config(network)
    assert (config.coding, config.code_bits, config.codebook_depth) == (Coding(8, 8), 6, 64 + 17)
    run_rtl_checked(network, random_inputs(network, 2), load=False)


@pytest.mark.parametrize("codings", [[(8, 8), (8, 2), (8, 1)], [(8, 2, 4), (8, 1), (8, 2)]])
def test_mixed_cnn(codings):
    # conv, max pooling, conv, Linear: edge-coded with the ROM; a learned first layer.
    network = random_cnn((3, 8, 8), [(6, 3, 1, 1), ("max", 2, 2), (10, 3, 1, 0)], 4, lanes=4,
                         seed=3, codings=codings)
    run_rtl_checked(network, random_inputs(network, 2))


def test_dense_baseline_runs_a_mix():
    network = random_network([20, 13, 7], codings=[(8, 8), (8, 2)], lanes=4, seed=2)
    dense = run_rtl_checked(network, random_inputs(network, 2), dense=True)
    assert dense.cycles == run_rtl_checked(network, random_inputs(network, 2)).cycles


def test_uniform_learned_table_layout_unchanged():
    # Distinct learned codebooks: one table per layer in layer order, as before mixing existed.
    network = random_network([30, 12, 9, 5], coding=(8, 2), lanes=4, seed=2, codebook_bits=4)
    layers = [layer for layer in network.layers if isinstance(layer, TernaryLayer)]
    entries, bases = decoder_tables(layers)
    assert entries == [word for layer in layers for word in layer.codebook.slot_table()]
    assert bases == [0, 16, 32]


def test_a_mix_the_hardware_cannot_run_is_refused():
    other_n = random_network([30, 20, 6], codings=[(8, 2), (16, 3)], lanes=4)
    with pytest.raises(TernacError, match=r"sub-vector lengths N=\[8, 16\].*activation word"):
        size_config(other_n)
    network = random_network([30, 20, 6], codings=EDGE[:2], lanes=4)
    narrow = size_config(random_network([30, 20, 6], lanes=4))            # a (8,2) build
    with pytest.raises(TernacError, match=r"uses coding \(8,8\): it needs K=8 .* has 2"):
        lower(network, narrow.replace(weight_depth=64))
    sixteen = size_config(random_network([30, 20, 6], coding=(16, 3), lanes=4))
    with pytest.raises(TernacError, match=r"its N differs .* holds N=16"):
        lower(network, sixteen)
    learned = random_network([30, 20, 6], codings=[(8, 2, 5), (8, 8)], lanes=4)
    with pytest.raises(TernacError, match="learned codebook: .* writable decoder table"):
        lower(learned, size_config(network))


# -- a planted bug: the array of the narrow layers' K --------------------------------------------

class NarrowArrayAccelerator(Accelerator):
    """Mutant: the MAC array built for K=2 (the edge network's middle layer), its ROM keeping
    each (8,8) code's first two slots only: the edge layers lose every further non-zero."""

    def _make_array(self):
        cfg = self.config
        narrow = Coding(cfg.coding.n, 2)
        mask = (1 << (narrow.k * narrow.slot_bits)) - 1
        return TernaryMacArray(lanes=cfg.lanes, coding=narrow, code_bits=cfg.code_bits,
                               acc_bits=cfg.acc_bits, tag_bits=self.array_tag_bits,
                               table=[entry & mask for entry in default_table(cfg.coding)])


def _first_two_nonzeros(layer):
    """``layer`` with each sub-vector cut to its first two non-zeros (what the mutant computes)."""
    patterns = layer.codebook.patterns.copy()
    for row in patterns:
        row[np.flatnonzero(row)[2:]] = 0
    return replace(layer, codebook=Codebook.learned_table(Coding(layer.coding.n, 8), patterns))


def test_planted_narrow_array_is_caught():
    network = random_network([30, 20, 11, 6], codings=EDGE, lanes=4, seed=3)
    x = random_inputs(network, 2)
    program = lower(network)
    run = run_rtl_network(NarrowArrayAccelerator(program.config), x, program=program,
                          beats=program.load_beats(), timeout_cycles=20 * program.cycles.total)
    with pytest.raises(AssertionError, match="Mismatched elements"):
        np.testing.assert_array_equal(run.outputs, golden_network(network, x))
    # Exactly the mutant's arithmetic: the edge layers with their upper slots dropped.
    mutated = replace(network, layers=[_first_two_nonzeros(layer) if layer.coding.k == 8 else layer
                                       for layer in network.layers])
    np.testing.assert_array_equal(run.outputs, golden_network(mutated, x))
    assert run.cycles == [program.cycles.total] * len(x)
