"""RTL blocks in Amaranth's simulator against the golden model: decoder, MAC array, requantizer,
pooling unit."""

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from ternac.model.arith import MULT_BITS, SHIFT_MAX, acc_bits, requantize
from ternac.model.codebook import Codebook, Coding, TernacError, canonical_patterns
from ternac.model.hw import DRAIN_TO_WRITE, ISSUE_TO_LATCH, HardwareConfig
from ternac.model.hw.config import MAX_AVG_TAPS
from ternac.model.hw.cycles import AVG_POOL_TO_WRITE, BUFFER_WRITE, POOL_TO_WRITE
from ternac.model.hw.lower import POOL_MODES
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.counter import SplitCounter
from ternac.rtl.decoder import SparseDecoder
from ternac.rtl.mac_array import TernaryMacArray
from ternac.rtl.pooling import PoolUnit
from ternac.rtl.requant import Requantizer


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("n,k,lanes", [(8, 2, 4), (4, 2, 3), (8, 1, 2), (5, 3, 2), (16, 3, 1)])
def test_decoder_rom_matches_slot_table(n, k, lanes):
    coding = Coding(n, k)
    table = Codebook.default(coding).slot_table()
    dut = SparseDecoder(coding=coding, lanes=lanes, code_bits=coding.code_bits, table=table)
    rng = np.random.default_rng(n * 10 + k)
    codes = rng.integers(0, len(table), (min(300, 4 * len(table)), lanes))
    codes[0] = 0

    async def bench(ctx):
        for row in codes:
            ctx.set(dut.codes, sum(int(c) << (p * coding.code_bits) for p, c in enumerate(row)))
            await ctx.tick()
            for p, c in enumerate(row):
                assert ctx.get(dut.slots[p].as_value()) == table[c]
    simulate(dut, bench)


def test_decoder_writable_learned_tables():
    coding = Coding(8, 2)
    rng = np.random.default_rng(1)
    books = [Codebook.learned_table(coding, np.concatenate(
        [canonical_patterns(coding)[:1], rng.permutation(canonical_patterns(coding)[1:])[:15]]))
        for _ in range(2)]
    tables = [book.slot_table() for book in books]
    dut = SparseDecoder(coding=coding, lanes=3, code_bits=4, depth=32)

    async def bench(ctx):
        for base, table in zip((0, 16), tables):
            for i, word in enumerate(table):
                ctx.set(dut.write.addr, base + i)
                ctx.set(dut.write.data, word)
                ctx.set(dut.write.en, 1)
                await ctx.tick()
        ctx.set(dut.write.en, 0)
        for base, table in zip((0, 16), tables):
            ctx.set(dut.base, base)
            for row in rng.integers(0, 16, (40, 3)):
                ctx.set(dut.codes, sum(int(c) << (4 * p) for p, c in enumerate(row)))
                await ctx.tick()
                for p, c in enumerate(row):
                    assert ctx.get(dut.slots[p].as_value()) == table[c]
    simulate(dut, bench)


@pytest.mark.parametrize("n,k,lanes,fan_in", [(8, 2, 4, 784), (4, 2, 3, 10), (5, 3, 2, 23)])
def test_mac_array_matches_dot_products(n, k, lanes, fan_in):
    coding = Coding(n, k)
    book = Codebook.default(coding)
    width = acc_bits(fan_in, coding)
    v = -(-fan_in // n)
    rng = np.random.default_rng(fan_in)
    codes = rng.integers(0, len(book), (2, lanes, v))               # two groups
    x = rng.integers(-128, 128, v * n)
    x[-8:] = -128                                                   # extremes
    dut = TernaryMacArray(lanes=lanes, coding=coding, code_bits=coding.code_bits, acc_bits=width,
                          tag_bits=4, table=book.slot_table())
    expect = [book.decode(codes[g]).reshape(lanes, -1) @ x for g in range(2)]
    latched = []

    async def bench(ctx):
        for g in range(2):
            for j in range(v):
                ctx.set(dut.weights, sum(int(c) << (p * coding.code_bits) for p, c in enumerate(codes[g, :, j])))
                ctx.set(dut.acts, sum((int(a) & 0xFF) << (8 * i) for i, a in enumerate(x[j * n:(j + 1) * n])))
                ctx.set(dut.valid, 1)
                ctx.set(dut.last, j == v - 1)
                ctx.set(dut.tag, g)
                await ctx.tick()
                if ctx.get(dut.latch):
                    latched.append((ctx.get(dut.latch_tag), [ctx.get(dut.sums[p]) for p in range(lanes)]))
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency + 1):
            if ctx.get(dut.latch):
                latched.append((ctx.get(dut.latch_tag), [ctx.get(dut.sums[p]) for p in range(lanes)]))
            await ctx.tick()
    simulate(dut, bench)
    assert [tag for tag, _ in latched] == [0, 1]
    for g, (_, sums) in enumerate(latched):
        assert sums == expect[g].tolist()


def requantize_rtl(dut, rows):
    """``y`` of the Requantizer ``dut`` for each of ``rows`` (dicts of its inputs), one row per
    cycle; each ``y`` must come exactly ``latency`` cycles after its row."""
    got = []

    async def bench(ctx):
        for i, row in enumerate(rows):
            for name, value in row.items():
                ctx.set(getattr(dut, name), int(value))
            ctx.set(dut.valid, 1)
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.y))
            assert len(got) == max(0, i + 2 - dut.latency)   # y of row i: `latency` ticks later
        ctx.set(dut.valid, 0)
        for _ in range(dut.latency):
            await ctx.tick()
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.y))
    simulate(dut, bench)
    return got


@pytest.mark.parametrize("width", [9, 17, 26])
def test_requantizer_bit_exact(width):
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 2)), (1 << (width - 2)) - 1             # acc + bias must fit `width`
    count = 400
    acc = rng.integers(lo, hi + 1, count)
    bias = rng.integers(lo, hi + 1, count)
    mult = rng.integers(0, 1 << MULT_BITS, count)
    shift = rng.integers(0, SHIFT_MAX + 1, count)
    relu = rng.integers(0, 2, count)
    # extremes: largest |acc|, largest M, every shift edge, zero
    edges = [(lo, lo, (1 << MULT_BITS) - 1, s) for s in (0, 1, 2, 31, 32, 62, 63)] + \
            [(hi, hi, (1 << MULT_BITS) - 1, s) for s in (0, 1, 15, 16, 63)] + [(0, 0, 0, 0), (-1, 0, 1, 1)]
    for i, (a, b, m, s) in enumerate(edges):
        acc[i], bias[i], mult[i], shift[i] = a, b, m, s
    # A layer without PReLU repeats (M, S) as its negative-side pair.
    got = requantize_rtl(Requantizer(acc_bits=width, tag_bits=1),
                         [{"acc": a, "bias": b, "mult": m, "shift": s, "neg_mult": m, "neg_shift": s, "relu": r}
                          for a, b, m, s, r in zip(acc, bias, mult, shift, relu)])
    expect = [int(requantize(a + b, m, s, bool(r))) for a, b, m, s, r in zip(acc, bias, mult, shift, relu)]
    assert got == expect


def base_config(**changes):
    params = {"lanes": 4, "coding": Coding(8, 2), "code_bits": 8, "weight_depth": 64, "act_depth": 16,
              "param_depth": 64, "layer_depth": 4, "acc_bits": 16}
    params.update(changes)
    return HardwareConfig(**params)


@pytest.mark.parametrize("changes,message", [
    ({"lanes": 0}, "lanes"),
    ({"lanes": 300}, "lanes"),
    ({"coding": Coding(8, 0), "code_bits": 1}, "K must be at least 1"),
    ({"code_bits": 5}, "ROM decodes 8-bit codes"),
    ({"weight_depth": 0}, "weight depth"),
    ({"act_depth": 1 << 30}, "act depth"),
    ({"acc_bits": 4}, "accumulator width"),
    ({"acc_bits": 64}, "accumulator width"),
    ({"dense": True, "codebook_depth": 16}, "dense baseline has no decoder table"),
])
def test_invalid_parameters_raise(changes, message):
    with pytest.raises(TernacError, match=message):
        Accelerator(base_config(**changes))


def test_latencies_match_cycle_model():
    dut = Accelerator(base_config())
    Fragment.get(dut, None)                 # elaboration checks the blocks' latencies
    assert dut.settle == ISSUE_TO_LATCH + 4 + DRAIN_TO_WRITE
    Fragment.get(Accelerator(base_config(avg_pool=True)), None)


MAX, AVG = POOL_MODES["max"], POOL_MODES["avg"]


def pool_windows(rng, n, count):
    """Random pooling windows: (mode, taps), each tap (bytes, skip, counted).

    Average windows count 1..9 taps (every count, padding taps among them, and the all -128
    and all 127 extremes); a skipped tap of a max window never wins.
    """
    windows = []
    for i in range(count):
        mode = AVG if i % 3 else MAX
        size = 1 + i % 9
        values = rng.integers(-128, 128, (size, n))
        if i % 11 == 1:
            values[:] = -128 if i % 2 else 127
        skip = rng.random(size) < 0.3
        counted = (rng.random(size) < 0.8) | (np.arange(size) == 0)       # at least one counted
        windows.append((mode, [(row, bool(s), bool(c)) for row, s, c in zip(values, skip, counted)]))
    return windows


def pool_expect(mode, taps):
    if mode == MAX:
        kept = [row for row, skip, _ in taps if not skip]
        return np.max(kept, axis=0) if kept else np.full(len(taps[0][0]), -128)
    total = sum(np.where(skip, 0, row) for row, skip, counted in taps if counted)
    count = sum(counted for *_, counted in taps)
    return (total + count // 2) // count                # the golden rule (model/reference.py)


@pytest.mark.parametrize("avg", [False, True])
def test_pool_unit_max_and_avg(avg):
    """Back-to-back windows of both modes, one tap per cycle: every result word at the
    mode's latency after its last tap (the cycle model's constants), bit-exact."""
    n = 4
    rng = np.random.default_rng(5)
    windows = [w for w in pool_windows(rng, n, 120) if avg or w[0] == MAX]
    dut = PoolUnit(n=n, depth=256, avg=avg)
    got, expect = [], []

    async def tick(ctx):
        await ctx.tick()
        if ctx.get(dut.out_valid):
            got.append((cycle[0], ctx.get(dut.out_word), ctx.get(dut.out_data)))

    cycle = [0]

    async def bench(ctx):
        previous = None
        for index, (mode, taps) in enumerate(windows):
            if mode != previous:                # a pass boundary: the last result is out first
                ctx.set(dut.valid, 0)
                for _ in range(dut.avg_latency):
                    cycle[0] += 1
                    await tick(ctx)
            previous = mode
            for t, (row, skip, counted) in enumerate(taps):
                ctx.set(dut.acts, sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(row)))
                controls = [("valid", 1), ("first", t == 0), ("last", t == len(taps) - 1),
                            ("skip", skip), ("word", index)]
                for name, value in controls + [("counted", counted), ("mode", mode)] * avg:
                    ctx.set(getattr(dut, name), int(value))
                cycle[0] += 1
                if t == len(taps) - 1:
                    latency = dut.avg_latency if mode == AVG else dut.latency
                    expect.append((cycle[0] - 1 + latency, index, pool_expect(mode, taps).tolist()))
                await tick(ctx)
        ctx.set(dut.valid, 0)
        for _ in range(dut.avg_latency):
            cycle[0] += 1
            await tick(ctx)
    simulate(dut, bench)
    assert 1 + dut.latency + BUFFER_WRITE == POOL_TO_WRITE and 1 + dut.avg_latency + BUFFER_WRITE == AVG_POOL_TO_WRITE
    unpacked = [(cycle, word, [((data >> (8 * i)) & 0xFF) - (((data >> (8 * i)) & 0x80) << 1)
                               for i in range(n)]) for cycle, word, data in got]
    assert unpacked == expect



def test_pool_unit_average_exhaustive():
    """Every count 1..MAX_AVG_TAPS and every sum of that many int8 values: the unit's
    division equals the golden floor((sum + count // 2) / count), lane by lane."""
    n = 16
    words = []                                          # (count, n sums)
    for count in range(1, MAX_AVG_TAPS + 1):
        sums = list(range(-128 * count, 127 * count + 1))
        sums += sums[:-len(sums) % n]
        words += [(count, sums[i: i + n]) for i in range(0, len(sums), n)]
    dut = PoolUnit(n=n, depth=4, avg=True)
    got = []

    async def tick(ctx):
        await ctx.tick()
        if ctx.get(dut.out_valid):
            got.append(ctx.get(dut.out_data))

    async def bench(ctx):
        for name, value in (("mode", AVG), ("counted", 1), ("valid", 1)):
            ctx.set(getattr(dut, name), value)
        for count, sums in words:
            for t in range(count):
                # sum = count * q + r: q + 1 on the first r taps, q on the others
                values = [total // count + (t < total % count) for total in sums]
                ctx.set(dut.acts, sum((v & 0xFF) << (8 * i) for i, v in enumerate(values)))
                ctx.set(dut.first, t == 0)
                ctx.set(dut.last, t == count - 1)
                await tick(ctx)
        ctx.set(dut.valid, 0)
        for _ in range(dut.avg_latency):
            await tick(ctx)
    simulate(dut, bench)
    assert len(got) == len(words)
    for data, (count, sums) in zip(got, words):
        lanes = [(data >> (8 * i)) & 0xFF for i in range(n)]
        assert [v - 256 * (v >> 7) for v in lanes] == [(total + count // 2) // count for total in sums]


@pytest.mark.parametrize("shift", [0, 1, 2])
def test_requantizer_saturation_edges(shift):
    # M = 1: the value before rounding walks through every int8 edge and the ReLU's zero
    # (stage 5 finds them from the bits of h, not from a compare).
    values = list(range(-700, 700))
    got = requantize_rtl(Requantizer(acc_bits=17, tag_bits=1),
                         [{"acc": v, "bias": 0, "mult": 1, "shift": shift, "neg_mult": 1, "neg_shift": shift,
                           "relu": relu} for relu in (0, 1) for v in values])
    assert got == [int(requantize(v, 1, shift, bool(relu))) for relu in (0, 1) for v in values]


@pytest.mark.parametrize("bias_stage", [False, True])
def test_requantizer_takes_the_negative_pair_by_the_sign_of_acc_plus_bias(bias_stage):
    # PReLU: (M_neg, S_neg) when acc + bias < 0. Half the samples have acc and acc + bias of
    # opposite signs, so a choice made on acc alone (or on the bias) differs. With the bias
    # add in a stage of its own (the ECP5 builds') the choice is made there.
    rng = np.random.default_rng(7)
    count, width = 300, 17
    acc = rng.integers(-2000, 2000, count)
    bias = np.where(rng.integers(0, 2, count) == 1, -acc + rng.integers(-50, 50, count), rng.integers(-50, 50, count))
    mult, shift = rng.integers(1 << 13, 1 << MULT_BITS, count), rng.integers(8, 16, count)
    neg_mult, neg_shift = rng.integers(-(1 << MULT_BITS) + 1, 1 << MULT_BITS, count), rng.integers(8, 16, count)
    got = requantize_rtl(Requantizer(acc_bits=width, tag_bits=1, bias_stage=bias_stage),
                         [{"acc": a, "bias": b, "mult": m, "shift": s, "neg_mult": nm, "neg_shift": ns}
                          for a, b, m, s, nm, ns in zip(acc, bias, mult, shift, neg_mult, neg_shift)])
    expect = [int(requantize(a + b, m, s, False, neg_mult=nm, neg_shift=ns))
              for a, b, m, s, nm, ns in zip(acc, bias, mult, shift, neg_mult, neg_shift)]
    assert got == expect


def test_load_port_consumes_a_rejected_count_past_16_bits():
    # The word count runs in two 16-bit halves: a rejected transfer of 65,537 words must take
    # exactly that many data beats, then the next header.
    from ternac.fpga.build import synthetic_network
    from ternac.model.hw import lower
    from ternac.model.hw.config import ADDRESS_BITS
    from ternac.model.hw.status import TARGET_VALUES, LoadError
    from ternac.rtl.buffers import LoadPort
    dut = LoadPort(lower(synthetic_network((16, 8))).config)
    words = (1 << 16) + 1
    busy = []

    async def bench(ctx):
        ctx.set(dut.load.valid, 1)
        for beat in [(TARGET_VALUES - 1) << ADDRESS_BITS, words] + [0] * words:
            ctx.set(dut.load.payload, beat)
            await ctx.tick()
            busy.append(ctx.get(dut.busy))
        ctx.set(dut.load.valid, 0)
        await ctx.tick()
        busy.append(ctx.get(dut.busy))
        assert ctx.get(dut.error) and ctx.get(dut.error_code) == LoadError.BAD_TARGET
        assert not ctx.get(dut.we)
    simulate(dut, bench)
    # busy from the header's acceptance to the last data beat's, then idle (HEADER)
    assert busy[:-2] == [1] * (words + 1) and busy[-2:] == [0, 0]


@pytest.mark.parametrize("init", [1, 0xFFFD, 0xFFFFFFFE])
def test_split_counter_carries_between_halves(init):
    dut = SplitCounter(width=32, init=init)

    async def bench(ctx):
        expected = init
        for cycle in range(12):
            assert ctx.get(dut.value) == expected
            assert ctx.get(dut.successor) == (expected + 1) % 2**32
            step = cycle % 4 != 1
            ctx.set(dut.step, step)
            await ctx.tick()
            expected = (expected + step) % 2**32
        ctx.set(dut.restart, 1)             # restart wins over step
        await ctx.tick()
        assert ctx.get(dut.value) == init
    simulate(dut, bench)

