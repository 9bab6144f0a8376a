"""The accelerator with its weight buffer in iCE40 SPRAM, signed off like the portable one.

The Verilog instantiates four ``SB_SPRAM256KA`` (P = 8, (8,2): 64-bit weight words); Verilator
and Icarus simulate them with Yosys' own model of the primitive. Networks are loaded through
``load`` (SPRAM has no initial contents), then every output is compared with the golden model
and every inference's cycles with the cycle model, exactly.

The byte-granular SPRAM buffer (the host link's frame buffer when the SPRAMs hold it) runs in
the Amaranth simulator against a model of the words, with the ``SB_SPRAM256KA`` instances
replaced by a model of Yosys' (its Verilator run with the real model is in
``tests/test_host_link.py``); the rule of what the SPRAMs hold is checked on configurations.
"""

import random
import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
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
from ternac.rtl import spram
from ternac.rtl.host_link import frame_words
from ternac.rtl.spram import (
    SpramBuffer,
    SpramWeightBuffer,
    spram_frame_memory,
    spram_holds,
    spram_weight_memory,
)

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


# -- the byte-granular SPRAM buffer (the host link's frame buffer) ----------------------------

class SpramModel(Elaboratable):
    """SB_SPRAM256KA as Yosys' model has it (``cells_sim.v``), for the Amaranth simulator: with
    CHIPSELECT, a read (WREN low) registers the word at ADDRESS into DATAOUT, a write stores the
    nibbles MASKWREN enables and leaves DATAOUT undefined (here: POISON); without, DATAOUT holds."""

    POISON = 0xDEAD

    def __init__(self, kind, *, i_ADDRESS, i_DATAIN, i_MASKWREN, i_WREN, i_CHIPSELECT, o_DATAOUT, **fixed):
        assert kind == "SB_SPRAM256KA"
        assert {k: v.value for k, v in fixed.items() if k != "i_CLOCK"} == {
            "i_STANDBY": 0, "i_SLEEP": 0, "i_POWEROFF": 1}
        self.address, self.data_in, self.mask, self.wren, self.cs = (
            i_ADDRESS, i_DATAIN, i_MASKWREN, i_WREN, i_CHIPSELECT)
        self.data_out = o_DATAOUT

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=16, depth=1 << 14, init=[])
        wp, rp = mem.write_port(granularity=4), mem.read_port()
        poisoned = Signal()
        m.d.comb += [wp.addr.eq(self.address), wp.data.eq(self.data_in),
                     wp.en.eq(Mux(self.cs & self.wren, self.mask, 0)),
                     rp.addr.eq(self.address), rp.en.eq(self.cs & ~self.wren),
                     self.data_out.eq(Mux(poisoned, self.POISON, rp.data))]
        with m.If(self.cs):
            m.d.sync += poisoned.eq(self.wren)
        return m


def _random_ops(depth, lanes, cycles, seed):
    """Per cycle (write or None, read address or None): first every word written whole (SPRAM
    has no initial contents), then random byte-masked writes (some with no byte, back-to-back
    ones), reads right after a write and reads held with ``read.en`` low, on a few addresses."""
    rng = random.Random(seed)
    full = (1 << lanes) - 1
    addresses = sorted(rng.sample(range(depth), min(depth, 6)) + [0, depth - 1])
    ops = [((a, rng.getrandbits(8 * lanes), full), None) for a in addresses]
    for _ in range(cycles):
        write = read = None
        if rng.random() < 0.45:
            write = (rng.choice(addresses), rng.getrandbits(8 * lanes),
                     rng.choice([0, full, 1 << rng.randrange(lanes), rng.getrandbits(lanes)]))
        if rng.random() < 0.6:
            read = rng.choice(addresses)
        ops.append((write, read))
    return ops


def _check_buffer(buffer, ops, *, granularity, width):
    """Run ``ops`` on ``buffer``; every read that is defined (not presented in the cycle a
    registered write lands, not held across one) must return the model's word."""
    lanes = width // granularity
    model, outcome = {}, {"checked": 0}

    async def bench(ctx):
        expected, landing = None, False            # expected: read.data's word (None: undefined)
        for write, read in ops:
            ctx.set(buffer.write.en, write[2] if write else 0)
            if write:
                ctx.set(buffer.write.addr, write[0])
                ctx.set(buffer.write.data, write[1])
            ctx.set(buffer.read.en, read is not None)
            if read is not None:
                ctx.set(buffer.read.addr, read)
                expected = None if landing else model[read]
            elif landing:
                expected = None
            if write and write[2]:                  # the model: a read sees the writes before it
                old = model.get(write[0], 0)
                for lane in range(lanes):
                    if write[2] >> lane & 1:
                        bits = ((1 << granularity) - 1) << (granularity * lane)
                        old = (old & ~bits) | (write[1] & bits)
                model[write[0]] = old
            landing = bool(write and write[2])      # the next cycle is the write's landing cycle
            await ctx.tick()
            if expected is not None:
                assert ctx.get(buffer.read.data) == expected, (write, read)
                outcome["checked"] += 1

    sim = Simulator(buffer)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outcome["checked"]


@pytest.mark.parametrize("width,granularity", [(64, 8), (32, 8), (40, 8), (64, 16), (32, 4)])
@pytest.mark.parametrize("primitive", [False, True])
def test_byte_granular_spram_buffer_against_a_model(monkeypatch, width, granularity, primitive):
    """The frame buffer's SPRAM (primitive: the SB_SPRAM256KA instances replaced by a model of
    Yosys' simulation model) and the portable Memory, against a Python model of the words."""
    if primitive:
        monkeypatch.setattr(spram, "Instance", SpramModel)
    depth = 300
    buffer = SpramBuffer(depth=depth, width=width, granularity=granularity, primitive=primitive)
    assert len(buffer.write.en) == width // granularity and len(buffer.write.addr) == 9
    ops = _random_ops(depth, width // 8, 400, seed=width + granularity)
    assert _check_buffer(buffer, ops, granularity=granularity, width=width) > 150


def test_frame_buffer_factory_and_primitive():
    fb = spram_frame_memory(784, 64, primitive=True)
    assert (len(fb.write.en), len(fb.read.data), fb.blocks) == (8, 64, 4)
    text = verilog.convert(fb, name="fb")
    assert text.count("SB_SPRAM256KA ") == 4
    # Byte 2k of the 64-bit word is nibbles 0 and 1 of column k, byte 2k + 1 nibbles 2 and 3.
    masks = re.findall(r"\.MASKWREN\(\{ (\S+), (\S+), (\S+) \}\)", text)
    assert masks == [(f"lanes[{2 * k + 1}]", f"lanes[{2 * k + 1}:{2 * k}]", f"lanes[{2 * k}]") for k in range(4)]
    with pytest.raises(TernacError, match="granularity"):
        SpramBuffer(depth=16, width=64, granularity=2)
    with pytest.raises(TernacError, match="granularity"):
        SpramBuffer(depth=16, width=36, granularity=8)
    # The host link takes a frame buffer of its words, written byte by byte, and no other.
    from ternac.rtl.accelerator import Accelerator
    from ternac.rtl.host_link import HostLink
    config = capacity_config(8, (8, 2), act_depth=300, weight_depth=64, param_depth=64)
    depths = []
    link = HostLink(Accelerator(config), config, divisor=4, timeout=100,
                    frame_memory=lambda depth, width: depths.append((depth, width)) or spram_frame_memory(depth, width))
    assert depths == [(300, 64)] and link.max_payload == 300 * 8
    with pytest.raises(TernacError, match="byte by byte"):
        HostLink(Accelerator(config), config, divisor=4, timeout=100,
                 frame_memory=lambda depth, width: SpramBuffer(depth=depth, width=width))


# -- the rule: what the UP5K's SPRAMs hold ------------------------------------------------------

def test_spram_holds_the_larger_buffer():
    def config(act_depth, weight_depth, lanes=8):
        return capacity_config(lanes, (8, 2), act_depth=act_depth, weight_depth=weight_depth, param_depth=64)
    assert frame_words(config(16, 64)) == 256 and frame_words(config(784, 64)) == 784
    # Frames: 256 (at least) or act_depth words of 64 bits; weights: weight_depth x 64 bits at P = 8.
    assert spram_holds(config(16, 512)) == "weights"
    assert spram_holds(config(16, 255)) == "frames"
    assert spram_holds(config(16, 256)) == "weights"                    # a tie keeps the weights there
    assert spram_holds(config(784, 700)) == "frames"
    assert spram_holds(config(784, 16384)) == "weights"
    with pytest.raises(TernacError, match=r"weight buffer \(16385 x 64 bit.*does not fit"):
        spram_holds(config(784, 16385))
    with pytest.raises(TernacError, match=r"frame buffer \(20000 x 64 bit.*does not fit"):
        spram_holds(config(20000, 64))
    with pytest.raises(TernacError, match=r"weight buffer \(4096 x 128 bit.*does not fit"):
        spram_holds(config(16, 4096, lanes=16))                        # 8 columns of 16 bits


def test_spram_holds_for_the_board_networks():
    """The iCEBreaker builds: an MLP's weights, a CNN's (and 64-64-10's) frame buffer."""
    from ternac.fpga.build import BOARDS, board_config, network_by_name
    ice40 = BOARDS["icebreaker"]
    for name, holds in [("784-256-256-10", "weights"), ("784-1000-10", "weights"),
                        ("64-64-10", "frames"), ("digits-cnn:8-16", "frames"), ("cnn:8-16", "frames")]:
        assert spram_holds(board_config(ice40, "ternary", network_by_name(name))) == holds, name
