"""The ``load`` protocol on the generated Verilog, against the golden model.

Everything the other cosim tests never do with ``load`` (they send one transfer per memory
from address 0, and never overlap it with ``act_in``): transfers split into random chunks at
non-zero addresses in random order, zero-count transfers, a partial reload that turns network
A into network B, invalid transfers of every kind (flagged in the status word, nothing
written, the stream kept in step, no hang), ``act_in`` offered during a transfer, and the
worst-case accumulation (densest legal rows, extreme inputs and biases) through the RTL.
The bench is :mod:`ternac.cosim.load_tb`; beats and expected values come from ``model/``
(:mod:`ternac.model.hw.status`, :func:`~ternac.model.hw.lower`, the golden model).

Two planted bugs that the rest of the suite misses must fail here: the load port ignoring
the header's address, and the sequencer accepting ``act_in`` during a load transfer.
"""

import dataclasses
import re

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, Signal
from conftest import random_network
from ternac.cosim import runner
from ternac.cosim.accelerator_sim import (
    TOPLEVEL,
    build_accelerator,
    capacity_config,
    golden_infer_step,
    golden_outputs,
    random_inputs,
)
from ternac.model.arith import acc_bound
from ternac.model.codebook import Codebook
from ternac.model.hw import ADDRESS_BITS, HardwareConfig, Target, lower
from ternac.model.hw.config import pack_fields
from ternac.model.hw.status import (
    LOAD_TO_INPUT,
    STATUS_FIELDS,
    LoadError,
    check_transfer,
    data_beats,
    status_table,
    transfer_beats,
)
from ternac.model.network import Network, TernaryLayer
from ternac.model.pack import pack_activations
from ternac.rtl import accelerator
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.buffers import LoadPort
from ternac.rtl.sequencer import Sequencer

TB = "ternac.cosim.load_tb"
#: The default-codebook ROM geometry of test_cosim_accelerator.py (its builds are shared).
ROM = capacity_config(lanes=8, coding=(8, 2), act_depth=16, weight_depth=512, param_depth=512)
#: The writable-decoder-table geometry of test_cosim_accelerator.py.
LEARNED = capacity_config(lanes=4, coding=(8, 3), act_depth=16, weight_depth=512, param_depth=512,
                          codebook_depth=256, code_bits=6)


# -- programs -------------------------------------------------------------------------------

def whole_transfers(network, config):
    """One transfer per memory from address 0: what ``AcceleratorProgram.load_beats`` sends."""
    return [(t, 0, words) for t, words in lower(network, config).images.items() if words]


def chunked_transfers(network, config, rng, *, zero_count=3):
    """Every memory image cut into random chunks, in random order, plus zero-count transfers."""
    transfers = []
    for target, words in lower(network, config).images.items():
        start = 0
        while start < len(words):
            size = int(rng.integers(1, max(2, len(words) // 3) + 1))
            transfers.append((target, start, words[start:start + size]))
            start += size
    for _ in range(zero_count):
        target = Target(int(rng.integers(0, 3)))
        transfers.append((target, int(rng.integers(0, config.depth(target) + 1)), []))
    order = rng.permutation(len(transfers))
    return [transfers[i] for i in order]


def beats_and_headers(config, transfers):
    """The beats of the transfers, and the index of each transfer's first beat."""
    beats, headers = [], []
    for target, address, words, *count in transfers:
        headers.append(len(beats))
        beats += transfer_beats(config, int(target), address, words, count=count[0] if count else None)
    return beats, headers


def load_step(config, transfers, *, idle=0.0, seed=0):
    beats, headers = beats_and_headers(config, transfers)
    return {"op": "load", "beats": beats, "headers": headers, "idle_probability": idle,
            "seed": seed, "budget": 5 * len(beats) + 100}


def infer_step(network, config, x, **kwargs):
    step = golden_infer_step(network, lower(network, config), x, **kwargs)
    return {**step, "budget": step["timeout_cycles"] * len(x) + 1000}


def status_step(**expect):
    return {"op": "status", "expect": expect}


CLEAN = {"busy": 0, "load_busy": 0, "error": 0, "error_code": 0}


def run_program(design, steps, name):
    result = runner.run_test(design, TB, data={"name": "load", "steps": steps}, name=name,
                             testcase="load_program")
    output = result.output
    assert output["mismatches"] == 0 and not output["problems"]
    return output


def infer_outputs(output):
    return [step["outputs"] for step in output["steps"] if step["op"] in ("infer", "overlap")]


@pytest.fixture(scope="module")
def rom_design():
    return build_accelerator(ROM, sim="verilator")


@pytest.fixture(scope="module")
def nets():
    # Same shapes (same memory layout), different weights; B shares A's first layer.
    a = random_network([33, 17, 8], seed=1)
    c = random_network([33, 17, 8], seed=2)
    last = dataclasses.replace(a.layers[1], codes=c.layers[1].codes, bias=c.layers[1].bias)
    b = Network(a.input_shape, a.input_scale, [a.layers[0], last], lanes=a.lanes)
    return a, b, c


# -- split, partial, zero-count ----------------------------------------------------------------

def split_program(network, config, other, seed):
    """Load ``other`` whole, then ``network`` in random chunks with gaps; infer; status clean."""
    rng = np.random.default_rng(seed)
    x = random_inputs(network, 4, seed=seed)
    transfers = chunked_transfers(network, config, rng)
    assert any(address > 0 for _, address, words in transfers if words)
    return [load_step(config, whole_transfers(other, config)),
            load_step(config, transfers, idle=0.3, seed=seed),
            status_step(**CLEAN), infer_step(network, config, x)], x


@pytest.mark.cosim
@pytest.mark.parametrize("geometry", ["rom", "learned"])
def test_split_transfers_in_random_order(geometry, nets):
    if geometry == "rom":
        config, (net, _, other) = ROM, nets
    else:
        config = LEARNED
        net = random_network([50, 30, 6], coding=(8, 3), lanes=4, seed=3, codebook_bits=5)
        other = random_network([50, 30, 6], coding=(8, 3), lanes=4, seed=4, codebook_bits=5)
        assert lower(net, config).images[Target.CODEBOOK]           # the table is split too
    steps, x = split_program(net, config, other, seed=7)
    output = run_program(build_accelerator(config, sim="verilator"), steps, f"split-{geometry}")
    assert infer_outputs(output) == [golden_outputs(net, x).tolist()]


def differing_runs(old, new):
    """Maximal runs of addresses where ``new`` differs from ``old``: (start, words)."""
    runs, start = [], None
    for i in range(len(new) + 1):
        differs = i < len(new) and new[i] != old[i]
        if differs and start is None:
            start = i
        elif not differs and start is not None:
            runs.append((start, new[start:i]))
            start = None
    return runs


@pytest.mark.cosim
def test_partial_reload_turns_a_into_b(rom_design, nets):
    a, b, _ = nets
    rng = np.random.default_rng(5)
    old, new = lower(a, ROM).images, lower(b, ROM).images
    transfers = [(t, start, words) for t in Target for start, words in differing_runs(old[t], new[t])]
    rewritten = sum(len(words) for _, _, words in transfers)
    assert 0 < rewritten < sum(len(words) for words in new.values())    # a part only
    assert all(start > 0 for _, start, _ in transfers)                    # A's first layer stays
    transfers = [transfers[i] for i in rng.permutation(len(transfers))]
    xa, xb = random_inputs(a, 3, seed=1), random_inputs(b, 3, seed=2)
    assert (golden_outputs(a, xb) != golden_outputs(b, xb)).any()
    steps = [load_step(ROM, whole_transfers(a, ROM)), infer_step(a, ROM, xa),
             load_step(ROM, transfers, idle=0.2, seed=3), status_step(**CLEAN),
             infer_step(b, ROM, xb)]
    output = run_program(rom_design, steps, "partial-reload")
    assert infer_outputs(output) == [golden_outputs(a, xa).tolist(), golden_outputs(b, xb).tolist()]


# -- invalid transfers ----------------------------------------------------------------------

GARBAGE = 0xFFFF_FFFF_FFFF_FFFF_FFFF_FFFF_FFFF_FFFF


def invalid_transfers(config):
    """One invalid transfer per kind: (target, address, words, count), and the code it must get.

    The data is all ones: written anywhere, it would corrupt the loaded network.
    """
    w = config.weight_depth
    cases = [
        ((5, 0, [GARBAGE] * 3, 3), LoadError.BAD_TARGET),
        ((15, 7, [], 0), LoadError.BAD_TARGET),
        ((int(Target.WEIGHTS), 0, [GARBAGE] * (w + 1), w + 1), LoadError.OUT_OF_RANGE),
        ((int(Target.PARAMS), config.param_depth - 1, [GARBAGE] * 2, 2), LoadError.OUT_OF_RANGE),
        ((int(Target.LAYERS), config.layer_depth + 1, [], 0), LoadError.OUT_OF_RANGE),
        ((int(Target.LAYERS), 1, [GARBAGE] * config.layer_depth, config.layer_depth),
         LoadError.OUT_OF_RANGE),
    ]
    if not config.codebook_depth:
        cases.append(((int(Target.CODEBOOK), 0, [GARBAGE] * 2, 2), LoadError.NO_MEMORY))
    for (target, address, _, count), code in cases:
        assert check_transfer(config, target, address, count) == code     # the model agrees
    return cases


def invalid_program(network, config, cases, seed=0):
    """Per invalid transfer: load the network with the invalid transfer in the middle of it,
    check the flag, infer exactly, reset, check the flag is cleared, infer exactly again."""
    rng = np.random.default_rng(seed)
    x = random_inputs(network, 2, seed=seed)
    steps = []
    for transfer, code in cases:
        chunks = chunked_transfers(network, config, rng, zero_count=1)
        half = len(chunks) // 2
        steps += [load_step(config, chunks[:half] + [transfer] + chunks[half:], idle=0.2, seed=seed),
                  status_step(busy=0, load_busy=0, error=1, error_code=int(code)),
                  infer_step(network, config, x), {"op": "reset", "hold": 2},
                  status_step(**CLEAN), infer_step(network, config, x)]
    # Sticky: the first rejection's code is kept through later ones and valid transfers.
    (first, first_code), (second, _) = cases[0], cases[2]
    steps += [load_step(config, [first, *whole_transfers(network, config), second]),
              status_step(error=1, error_code=int(first_code)), infer_step(network, config, x),
              {"op": "reset", "hold": 1}, status_step(**CLEAN)]
    return steps, x


@pytest.mark.cosim
def test_invalid_transfers_are_rejected_flagged_and_harmless(rom_design, nets):
    a = nets[0]
    cases = invalid_transfers(ROM)
    assert {code for _, code in cases} == set(LoadError) - {LoadError.NONE}
    steps, x = invalid_program(a, ROM, cases)
    output = run_program(rom_design, steps, "invalid")
    expected = golden_outputs(a, x).tolist()
    assert infer_outputs(output) == [expected] * (2 * len(cases) + 1)
    resets = [step for step in output["steps"] if step["op"] == "reset"]
    assert all(step["status"] == step["busy"] == step["cycles"] == 0 for step in resets)


@pytest.mark.cosim
def test_invalid_transfers_icarus(nets):
    # The cheapest scenario on the second simulator: one case of each error code.
    a = nets[0]
    cases = invalid_transfers(ROM)
    picked = [cases[0], cases[3], cases[-1]]
    steps, x = invalid_program(a, ROM, picked)
    output = run_program(build_accelerator(ROM, sim="icarus"), steps, "invalid-icarus")
    assert infer_outputs(output) == [golden_outputs(a, x).tolist()] * (2 * len(picked) + 1)


def test_data_beats_of_rejected_transfers():
    # What the bench's framing check relies on: a rejected transfer still occupies its beats.
    assert data_beats(ROM, 5, 3) == 3
    assert data_beats(ROM, int(Target.CODEBOOK), 2) == 2 * ROM.beats_per_word(Target.CODEBOOK)
    assert data_beats(ROM, int(Target.WEIGHTS), 4) == 8
    beats, headers = beats_and_headers(ROM, [(Target.PARAMS, 3, [1, 2]), (9, 0, [7], 1)])
    assert headers == [0, 6] and len(beats) == 9
    assert beats[0] == int(Target.PARAMS) << ADDRESS_BITS | 3


def loadport_trace(port, beats):
    """Feed ``beats`` to a LoadPort in Amaranth's simulator: per beat (busy, we, addr), the
    write request being the one the beat makes (registered: seen the cycle after)."""
    from amaranth.sim import Simulator

    trace = []

    async def bench(ctx):
        ctx.set(port.load.valid, 1)
        for beat in beats:
            ctx.set(port.load.payload, beat)
            busy = ctx.get(port.busy)
            await ctx.tick()
            trace.append((busy, ctx.get(port.we), ctx.get(port.addr)))

    sim = Simulator(port)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return trace


def test_loadport_drops_invalid_transfers_and_keeps_step():
    # Each invalid transfer, then a valid one-word write: the port must be back at its header
    # after exactly the rejected transfer's beats, write nothing for it, then write the word.
    for (target, address, words, count), code in invalid_transfers(ROM):
        transfers = [(target, address, words, count), (Target.LAYERS, 1, [5])]
        beats, headers = beats_and_headers(ROM, transfers)
        trace = loadport_trace(LoadPort(ROM), beats)
        busy = [b for b, _, _ in trace]
        assert busy == [int(i not in headers) for i in range(len(beats))], (code, busy)
        writes = [(we, addr) for _, we, addr in trace if we]
        assert writes == [(1 << Target.LAYERS, 1)], (code, writes)


# -- act_in during a load transfer ------------------------------------------------------------

def overlap_step(config, transfer, x_row, network, *, offer_after, seed):
    beats, headers = beats_and_headers(config, [transfer])
    n = config.coding.n
    expected = golden_outputs(network, x_row[None])[0].astype(int).tolist()
    return {"op": "overlap", "beats": beats, "headers": headers, "offer_after": offer_after,
            "inputs": pack_activations(x_row, n), "expected": expected, "n": n,
            "layer": len(network.layers) - 1, "sample": offer_after, "idle_probability": 0.3,
            "seed": seed, "budget": 5 * len(beats) + 20_000}


def overlap_program(a, spoiler, config):
    """Before each overlap, the weights are the spoiler's; the overlapped transfer restores A's.

    An inference that starts during the transfer computes with wrong weights.
    """
    x = random_inputs(a, 4, seed=3)
    weights = (Target.WEIGHTS, 0, lower(a, config).images[Target.WEIGHTS])
    spoil = [(Target.WEIGHTS, 0, lower(spoiler, config).images[Target.WEIGHTS])]
    steps = [load_step(config, whole_transfers(a, config))]
    size = len(beats_and_headers(config, [weights])[0])
    for i, offer_after in enumerate([0, 1, 2, size // 2]):
        steps += [load_step(config, spoil),
                  overlap_step(config, weights, x[i], a, offer_after=offer_after, seed=i)]
    steps += [status_step(**CLEAN), infer_step(a, config, x)]
    return steps, x


@pytest.mark.cosim
def test_act_in_waits_for_the_load_transfer(rom_design, nets):
    a, _, c = nets
    steps, x = overlap_program(a, c, ROM)
    output = run_program(rom_design, steps, "overlap")
    expected = golden_outputs(a, x).tolist()
    overlaps = [step for step in output["steps"] if step["op"] == "overlap"]
    assert [step["outputs"] for step in overlaps] == expected          # one sample each
    assert all(step["first_act_in"] > step["last_load"] for step in overlaps)
    assert output["steps"][-1]["outputs"] == expected



def relu_flipped(program, index=0):
    """Descriptor ``index`` of ``program`` packed with its ``relu`` field inverted."""
    fields = program.layers[index].fields(program.config.coding.n)
    return pack_fields(program.config.layer_fields(), {**fields, "relu": 1 - fields["relu"]})


@pytest.mark.cosim
def test_inference_right_after_a_descriptor_write_reads_it(rom_design, nets):
    # The layer table's read is transparent: an input offered while descriptor 0 is being
    # rewritten is taken the first cycle it may be, when that last write lands, and must run
    # with the new descriptor, not the spoiled one (its ReLU inverted) that was there before.
    a = nets[0]
    x = random_inputs(a, 3, seed=5)
    program = lower(a, ROM)
    word = program.images[Target.LAYERS][0]
    steps = [load_step(ROM, whole_transfers(a, ROM))]
    for i, offer_after in enumerate([0, 1, 2]):
        steps += [load_step(ROM, [(Target.LAYERS, 0, [relu_flipped(program)])]),
                  overlap_step(ROM, (Target.LAYERS, 0, [word]), x[i], a, offer_after=offer_after, seed=i)]
    output = run_program(rom_design, steps, "descriptor-overlap")
    overlaps = [step for step in output["steps"] if step["op"] == "overlap"]
    assert [step["outputs"] for step in overlaps] == golden_outputs(a, x).tolist()
    # Taken the first cycle it may be: after the last beat the beat register
    # (LOAD_PORT_LAG), the write, the descriptor's registered view, the registered input gate.
    assert [step["first_act_in"] - step["last_load"] for step in overlaps] == [LOAD_TO_INPUT] * 3


# -- worst-case accumulation ----------------------------------------------------------------

def worst_case_network(config, out_features=16):
    """One layer of the largest fan-in ``config`` takes; every sub-vector has K non-zeros, all
    +1 or all -1 per row; biases at +-acc_bound; requantizer scales that keep the accumulator
    visible in the int8 output (and some that saturate)."""
    coding, fan_in = config.coding, config.act_depth * config.coding.n
    rng = np.random.default_rng(0)
    bound = acc_bound(fan_in, coding)
    book = Codebook.default(coding)
    signs = np.where(np.arange(out_features) // 2 % 2 == 0, 1, -1)
    subvectors = np.zeros((out_features, fan_in // coding.n, coding.n), dtype=np.int8)
    for o in range(out_features):
        for v in range(subvectors.shape[1]):
            subvectors[o, v, rng.choice(coding.n, coding.k, replace=False)] = signs[o]
    codes = book.encode(subvectors).astype(np.uint16)
    bias = np.where(np.arange(out_features) % 2 == 0, bound, -bound).astype(np.int64)
    # y ~ acc / 2**(S - 14) with M = 2**14: S = 21 maps +-2*bound into int8 for most rows.
    mult = np.full(out_features, 1 << 14, dtype=np.int64)
    shift = np.where(np.arange(out_features) % 4 == 3, 10, 21).astype(np.int64)
    layer = TernaryLayer("worst", fan_in, out_features, book, codes, np.ones(out_features),
                         bias, mult, shift, False, 1.0, 1.0)
    return Network((fan_in,), 1.0, [layer], lanes=config.lanes), bound


@pytest.mark.cosim
def test_worst_case_accumulation_through_the_rtl(rom_design):
    net, bound = worst_case_network(ROM)
    layer = net.ternary_layers[0]
    size = layer.in_features
    rng = np.random.default_rng(1)
    x = np.stack([np.full(size, -128), np.full(size, 127),
                  np.where(np.arange(size) % 2 == 0, 127, -128),
                  rng.choice([-128, 127], size)]).astype(np.int8)
    acc = x.astype(np.int64) @ layer.weights().T.astype(np.int64) + layer.bias
    # Both extremes of the accumulator are reached: |dot| = acc_bound, plus a bias at the bound.
    assert acc.max() == 2 * bound and acc.min() == -2 * bound
    assert 2 * bound < 1 << (ROM.acc_bits - 1)
    out = golden_outputs(net, x)
    assert len(np.unique(out)) > 4                      # not all saturated: the values show
    steps = [load_step(ROM, whole_transfers(net, ROM)), infer_step(net, ROM, x)]
    output = run_program(rom_design, steps, "worst-case")
    assert infer_outputs(output) == [out.tolist()]


# -- the status word in the docs ----------------------------------------------------------------

def test_status_word_documented_once():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    assert status_table() in doc
    layout = accelerator.status_layout()
    assert layout.size == 8
    for field in STATUS_FIELDS:
        assert layout[field.name].offset == field.offset
        assert Shape.cast(layout[field.name].shape).width == field.width


# -- planted bugs the rest of the suite misses ----------------------------------------------------

class AddressIgnoringLoadPort(LoadPort):
    """Planted bug (a): every transfer is written from address 0, whatever its header says."""

    def __init__(self, config):
        self._config = config
        super().__init__(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.port = port = LoadPort(self._config)
        base = Signal.like(port.addr)
        m.d.comb += [port.load.payload.eq(self.load.payload), port.load.valid.eq(self.load.valid),
                     self.load.ready.eq(port.load.ready), self.addr.eq(port.addr - base),
                     *[getattr(self, name).eq(getattr(port, name))
                       for name in ("busy", "data", "we", "error", "error_code")]]
        with m.If(~port.busy & self.load.valid):            # a header beat
            m.d.sync += base.eq(self.load.payload[:ADDRESS_BITS])
        return m


class LoadIgnoringSequencer(Sequencer):
    """Planted bug (b): ``act_in`` is accepted whatever the load port is doing."""

    def elaborate(self, platform):
        port, self.load_busy = self.load_busy, Signal()      # an undriven 0 in its place
        try:
            return super().elaborate(platform)
        finally:
            self.load_busy = port


class MutantAccelerator(Accelerator):
    def __init__(self, config, *, mutation, **kwargs):
        self._mutation = mutation
        super().__init__(config, **kwargs)

    def elaborate(self, platform):
        name, cls = {"address": ("LoadPort", AddressIgnoringLoadPort),
                     "overlap": ("Sequencer", LoadIgnoringSequencer)}[self._mutation]
        original = getattr(accelerator, name)
        setattr(accelerator, name, cls)
        try:
            return super().elaborate(platform)
        finally:
            setattr(accelerator, name, original)


def mutant_accelerator(hardware, mutation):
    return MutantAccelerator(HardwareConfig.from_dict(hardware), mutation=mutation)


def mutant_design(mutation):
    return runner.build_design(mutant_accelerator,
                               {"hardware": ROM.to_dict(), "mutation": mutation},
                               sim="icarus", toplevel=TOPLEVEL)


@pytest.mark.cosim
def test_planted_ignored_address_is_caught(nets):
    a, _, c = nets
    steps, _ = split_program(a, ROM, c, seed=7)
    # The same program passes on the production RTL (Icarus, as the mutant) ...
    run_program(build_accelerator(ROM, sim="icarus"), steps, "planted-address-clean")
    # ... and the standard whole-memory load cannot see the bug (every transfer is at 0).
    x = random_inputs(a, 2)
    whole = [{"op": "load", "beats": lower(a, ROM).load_beats(),
              "headers": beats_and_headers(ROM, whole_transfers(a, ROM))[1], "budget": 10_000},
             infer_step(a, ROM, x)]
    run_program(mutant_design("address"), whole, "planted-address-whole")
    with pytest.raises(runner.CosimFailure, match=r"values differ .* first at sample \d+"):
        run_program(mutant_design("address"), steps, "planted-address")


@pytest.mark.cosim
def test_planted_act_in_during_load_is_caught(nets):
    a, _, c = nets
    steps, _ = overlap_program(a, c, ROM)
    with pytest.raises(runner.CosimFailure, match="values differ") as info:
        run_program(mutant_design("overlap"), steps, "planted-overlap")
    # Both checks see it: wrong outputs (computed with the spoiler's weights), and the handshake.
    problems = info.value.result.output["problems"]
    assert any(re.match(r"overlap: act_in accepted at cycle \d+, during the load transfer", p)
               for p in problems), problems
