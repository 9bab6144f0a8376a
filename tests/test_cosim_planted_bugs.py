"""The co-simulation catches planted bugs: each mutant accelerator must fail the scoreboard.

Three mutants of the production RTL, built in this process only (nothing test-only lives in
``rtl/``), each run on Icarus through the ordinary accelerator test bench:

* ``decoder``: one entry of the default-codebook decoder ROM has one bit flipped (the sign of
  the first non-zero of the code the test layer uses most);
* ``accumulate``: lane 0 of the MAC array drops one accumulate per lane group (the partial
  sum of the group's last input word);
* ``rounding``: the requantizer truncates instead of rounding half up.

Every mutant must raise :exc:`CosimFailure` whose message is the scoreboard's, naming the
first wrong value. Beyond "it failed", each test predicts the mutant's exact outputs with a
mutated copy of the integer arithmetic (single-layer network, so the effect is exact) and
checks the RTL produced exactly those: the planted bug is what the scoreboard saw.
"""

import re
import time
from contextlib import contextmanager

import numpy as np
import pytest
from amaranth.hdl import Cat, Fragment, Module, Mux
from amaranth.lib.wiring import In
from amaranth.sim import Simulator
from conftest import random_network
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
from ternac.model.arith import ACT_MAX, ACT_MIN, MULT_BITS, SHIFT_MAX, requantize
from ternac.model.codebook import Codebook
from ternac.model.hw import LOAD_BITS, HardwareConfig, Target, default_table, lower
from ternac.rtl import accelerator, buffers, mac_array
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.requant import Requantizer

SIM = "icarus"          # compiles in seconds: three mutant builds stay cheap
#: Same as the P=8 (8,2) geometry of test_cosim_accelerator.py, so the clean run shares its build.
CONFIG = capacity_config(lanes=8, coding=(8, 2), act_depth=16, weight_depth=512, param_depth=512)
SCOREBOARD_MESSAGE = re.compile(
    r"accelerator_program: accelerator: (\d+) of (\d+) values differ \(layer 0: \d+\); "
    r"first at sample (\d+), layer 0, neuron (\d+): expected (-?\d+), got (-?\d+)")


# -- the mutants (Amaranth, elaborated in this process only) ----------------------------------

class FlippedDecoderAccelerator(Accelerator):
    """The default-codebook ROM with bit ``bit`` of entry ``code`` flipped."""

    def __init__(self, config, *, code, bit, **kwargs):
        self._flip = (code, bit)
        super().__init__(config, **kwargs)

    def _make_array(self):
        array = super()._make_array()
        table = list(array._table)
        assert table == default_table(self.config.coding)       # the production ROM contents
        code, bit = self._flip
        table[code] ^= 1 << bit
        array._table = table
        return array


@contextmanager
def _patched(module, name, value):
    """Replace ``module.name`` for the duration of one elaboration, in this process only."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield original
    finally:
        setattr(module, name, original)


def _dropping_accumulate(m, *, addends, valid, last, tag, component, bits=None, **options):
    # Lane 0 adds nothing for a group's last word.
    addends, bits = list(addends), list(bits) if bits else None
    addends[0] = [Mux(last, 0, term) for term in addends[0]]
    if bits:
        bits[0] = [bit & ~last for bit in bits[0]]
    _PRODUCTION_ACCUMULATE(m, addends=addends, bits=bits, valid=valid, last=last,
                           tag=tag, component=component, **options)


_PRODUCTION_ACCUMULATE = mac_array.accumulate


class _DroppingArray(mac_array.TernaryMacArray):
    def elaborate(self, platform):
        with _patched(mac_array, "accumulate", _dropping_accumulate):
            return super().elaborate(platform)


class DroppedAccumulateAccelerator(Accelerator):
    def _make_array(self):
        array = super()._make_array()
        assert type(array) is mac_array.TernaryMacArray
        array.__class__ = _DroppingArray
        return array


class BeatSwappedLoadPort(buffers.LoadPort):
    """The production load port, but a multi-beat word arrives with its beats in reverse order.

    Wraps an unmodified :class:`~ternac.rtl.buffers.LoadPort` (every port passed through) and
    reverses the 32-bit beats of the word it writes to any target whose words take several
    beats: the layer descriptors among them, so the sequencer runs garbage.
    """

    def __init__(self, config):
        self._swap_config = config
        super().__init__(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.production = port = buffers.LoadPort(self._swap_config)
        for (path, member, outer), (_, _, inner) in zip(self.signature.flatten(self),
                                                        port.signature.flatten(port)):
            if path == ("data",):
                m.d.comb += outer.eq(inner)
            elif member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        for target in Target:
            beats = self._swap_config.beats_per_word(target)
            if self._swap_config.depth(target) and beats > 1:
                word = port.word(target)
                chunks = [word[LOAD_BITS * i: LOAD_BITS * (i + 1)] for i in range(beats)]
                with m.If(port.we[target]):
                    m.d.comb += self.data.eq(Cat(port.data[:len(port.data) - len(word)], *reversed(chunks)))
        return m


class BeatSwappedAccelerator(Accelerator):
    """The accelerator with :class:`BeatSwappedLoadPort` in place of the load port."""

    def elaborate(self, platform):
        with _patched(accelerator, "LoadPort", BeatSwappedLoadPort) as original:
            assert original is buffers.LoadPort
            return super().elaborate(platform)


class MutantRequantizer(Requantizer):
    """The production requantizer, with ``truncate`` dropping the rounding increment."""

    def __init__(self, *, truncate, **kwargs):
        self._truncate = truncate
        super().__init__(**kwargs)

    def _rounding_increment(self):
        return 0 if self._truncate else super()._rounding_increment()               # the bug


class TruncatingAccelerator(Accelerator):
    """The accelerator with :class:`MutantRequantizer` in place of the requantizer."""

    def __init__(self, config, *, truncate=True, **kwargs):
        self._truncate = truncate
        super().__init__(config, **kwargs)

    def elaborate(self, platform):
        def requantizer(**kwargs):
            return MutantRequantizer(truncate=self._truncate, **kwargs)

        with _patched(accelerator, "Requantizer", requantizer) as original:
            assert original is Requantizer
            return super().elaborate(platform)


def mutant_accelerator(hardware, mutation, **params):
    """Factory for the runner: ``mutation`` names the planted bug."""
    cls = {"decoder": FlippedDecoderAccelerator, "accumulate": DroppedAccumulateAccelerator,
           "rounding": TruncatingAccelerator, "beat-order": BeatSwappedAccelerator}[mutation]
    return cls(HardwareConfig.from_dict(hardware), **params)


# -- the mutants' arithmetic, predicted here (single-layer networks) ---------------------------

def _layer_weights(layer, patterns):
    w = patterns[layer.codes.astype(np.int64)].reshape(layer.out_features, -1)
    return w[:, :layer.in_features].astype(np.int64)


def truncating_requantize(acc, mult, shift, relu):
    """:func:`~ternac.model.arith.requantize` with the planted bug: truncate, don't round."""
    y = (np.asarray(acc, dtype=np.int64) * np.asarray(mult, dtype=np.int64)) >> \
        np.asarray(shift, dtype=np.int64)
    if relu:
        y = np.maximum(y, 0)
    return np.clip(y, ACT_MIN, ACT_MAX).astype(np.int8)


def predicted_mutant_outputs(layer, x, *, patterns=None, drop_lane0_last_word=False,
                             truncate=False, lanes=8):
    x = np.asarray(x, dtype=np.int64)
    book = layer.codebook.patterns if patterns is None else patterns
    acc = x @ _layer_weights(layer, book).T + layer.bias.astype(np.int64)
    if drop_lane0_last_word:
        start = (layer.subvectors - 1) * layer.coding.n
        last = x[:, start:] @ _layer_weights(layer, book)[:, start:].T
        lane0 = np.arange(layer.out_features) % lanes == 0
        acc[:, lane0] -= last[:, lane0]
    arithmetic = truncating_requantize if truncate else requantize
    return arithmetic(acc, layer.mult, layer.shift, layer.relu)


@pytest.fixture(scope="module")
def layer_case():
    # One 64 -> 24 layer (8 input words, 3 lane groups), no ReLU: every bug shows directly.
    net = random_network([64, 24], seed=11)
    x = random_inputs(net, 6, seed=12)
    return net, x


def run_mutant(net, x, mutation, **params):
    design = build_design(mutant_accelerator,
                          {"hardware": CONFIG.to_dict(), "mutation": mutation, **params},
                          sim=SIM, toplevel=TOPLEVEL)
    steps = [golden_load_step(lower(net, CONFIG)), golden_infer_step(net, lower(net, CONFIG), x)]
    return lambda: run_rtl_program(design, steps, name=f"planted-{mutation}")


def check_caught(net, x, run, predicted):
    """The run fails on the scoreboard, naming the first value where the bug shows."""
    golden = golden_outputs(net, x)
    assert (predicted != golden).any(), "the planted bug must be observable on these inputs"
    with pytest.raises(CosimFailure) as info:
        run()
    message = str(info.value)
    match = SCOREBOARD_MESSAGE.search(message)
    assert match, message
    differ, checked, sample, neuron, expected, got = map(int, match.groups())
    first = tuple(np.argwhere(predicted != golden)[0])
    assert (sample, neuron) == first
    assert (expected, got) == (golden[first], predicted[first])
    assert differ == np.count_nonzero(predicted != golden) and checked == golden.size
    output = info.value.result.output
    assert output["problems"] == []                       # timing is untouched: values only
    np.testing.assert_array_equal(np.array(output["steps"][-1]["outputs"]), predicted)
    return message


# -- tests ----------------------------------------------------------------------------------

@pytest.mark.cosim
def test_clean_design_passes(layer_case):
    # The same program on the production RTL passes: the failures below are the bugs'.
    net, x = layer_case
    design = build_accelerator(CONFIG, sim=SIM)
    result = run_rtl_program(design, [golden_load_step(lower(net, CONFIG)),
                                      golden_infer_step(net, lower(net, CONFIG), x)])
    np.testing.assert_array_equal(np.array(result.output["steps"][-1]["outputs"]),
                                  golden_outputs(net, x))


@pytest.mark.cosim
def test_flipped_decoder_entry_is_caught(layer_case):
    net, x = layer_case
    layer = net.ternary_layers[0]
    codes, counts = np.unique(layer.codes[layer.codes != 0], return_counts=True)
    code = int(codes[np.argmax(counts)])                 # the code this layer uses most
    coding = layer.coding
    book = Codebook.default(coding).patterns.copy()
    lane = int(np.flatnonzero(book[code])[0])
    book[code, lane] *= -1                                # slot 0's "negative" bit flipped
    bit = coding.index_bits                               # slot 0: index, negative, valid
    assert default_table(coding)[code] >> (coding.index_bits + 1) & 1  # slot 0 is valid
    check_caught(net, x, run_mutant(net, x, "decoder", code=code, bit=bit),
                 predicted_mutant_outputs(layer, x, patterns=book))


@pytest.mark.cosim
def test_dropped_accumulate_is_caught(layer_case):
    net, x = layer_case
    check_caught(net, x, run_mutant(net, x, "accumulate"),
                 predicted_mutant_outputs(net.ternary_layers[0], x, drop_lane0_last_word=True))


@pytest.mark.cosim
def test_requantizer_rounding_perturbation_is_caught(layer_case):
    net, x = layer_case
    check_caught(net, x, run_mutant(net, x, "rounding"),
                 predicted_mutant_outputs(net.ternary_layers[0], x, truncate=True))


def requantizer_outputs(dut, vectors):
    """``y`` of a requantizer for each ``(acc, bias, mult, shift, relu[, neg_mult, neg_shift])``,
    one per cycle (Amaranth's simulator), with the latency checked on the way. Without a
    negative-side pair the vector's ``(mult, shift)`` is used for both signs."""
    got = []

    async def bench(ctx):
        for i, vector in enumerate([*vectors, *[None] * dut.latency]):
            if vector is not None:
                vector = (*vector, *vector[2:4]) if len(vector) == 5 else vector
                for name, value in zip(("acc", "bias", "mult", "shift", "relu", "neg_mult",
                                        "neg_shift"), vector):
                    ctx.set(getattr(dut, name), int(value))
            ctx.set(dut.valid, vector is not None)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.y))
            assert len(got) == max(0, min(i + 2 - dut.latency, len(vectors)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_rounding_mutant_truncates_where_production_rounds():
    # The production requantizer equals arith.requantize cycle for cycle, also on the
    # negative-side (PReLU) pair; the mutant differs only in stage 4 and must truncate.
    rng = np.random.default_rng(3)
    count, bits = 300, CONFIG.acc_bits
    lo, hi = -(1 << (bits - 2)), (1 << (bits - 2)) - 1          # acc + bias fits acc_bits
    vectors = list(zip(rng.integers(lo, hi + 1, count), rng.integers(lo, hi + 1, count),
                       rng.integers(0, 1 << MULT_BITS, count), rng.integers(0, SHIFT_MAX + 1, count),
                       rng.integers(0, 2, count)))
    vectors += [(hi, hi, (1 << MULT_BITS) - 1, s, 0) for s in (0, 1, 16, SHIFT_MAX)]
    vectors += [(lo, lo, (1 << MULT_BITS) - 1, s, 0) for s in (0, 1, 16, SHIFT_MAX)]
    vectors += [(1, 0, 1, 1, 0), (-1, 0, 1, 1, 0), (3, 0, 1, 2, 1)]    # exact halves
    params = {"acc_bits": bits, "tag_bits": 10}
    production = requantizer_outputs(Requantizer(**params), vectors)
    copy = requantizer_outputs(MutantRequantizer(truncate=False, **params), vectors)
    mutant = requantizer_outputs(MutantRequantizer(truncate=True, **params), vectors)
    golden = [int(requantize(a + b, m, s, bool(r))) for a, b, m, s, r in vectors]
    truncated = [int(truncating_requantize(a + b, m, s, bool(r))) for a, b, m, s, r in vectors]
    assert production == golden
    assert copy == production
    assert mutant == truncated and mutant != golden
    slopes = [(a, b, m, s, 0, int(n), int(t)) for (a, b, m, s, _), n, t in
              zip(vectors, rng.integers(-(1 << MULT_BITS) + 1, 1 << MULT_BITS, len(vectors)),
                  rng.integers(0, SHIFT_MAX + 1, len(vectors)))]
    assert requantizer_outputs(Requantizer(**params), slopes) == [
        int(requantize(a + b, m, s, False, n, t)) for a, b, m, s, _, n, t in slopes]


def test_mutations_stay_inside_their_elaboration():
    # Each mutant patches a name in an RTL module while it elaborates, and only then.
    for design in (TruncatingAccelerator(CONFIG), DroppedAccumulateAccelerator(CONFIG),
                   BeatSwappedAccelerator(CONFIG)):
        Fragment.get(design, None)
    assert mac_array.accumulate is _PRODUCTION_ACCUMULATE
    assert accelerator.Requantizer is Requantizer
    assert accelerator.LoadPort is buffers.LoadPort


@pytest.mark.cosim
@pytest.mark.timeout(60)
def test_hung_design_fails_fast_naming_the_stream(layer_case):
    # Multi-beat load words assembled in the wrong beat order corrupt the layer descriptors;
    # the accelerator then stops handshaking. The bench's cycle budgets must fail the run
    # within seconds, naming the stream, instead of hanging the suite.
    net, x = layer_case
    assert CONFIG.beats_per_word(Target.LAYERS) > 1          # the beat order matters
    run = run_mutant(net, x, "beat-order")
    started = time.perf_counter()
    with pytest.raises(CosimFailure) as info:
        run()
    seconds = time.perf_counter() - started
    print(f"hung design failed after {seconds:.1f} s: {info.value}")
    assert seconds < 30
    # Which stream stops depends on how the descriptor is corrupted: input refused, or no output.
    assert re.search(r"sample 0: inference not finished within \d+ cycles: stream "
                     r"('act_in': beat \d+ of \d+ not accepted, ready low for \d+ cycles \(budget \d+\)"
                     r"|'act_out': \d+ of \d+ beats after \d+ cycles \(budget\)) at cycle \d+",
                     str(info.value)), str(info.value)
