"""The ECP5 primitives the builds instantiate: the weight buffer in DP16KD blocks with their
output registers (``rtl/ecp5_bram.py``: its INITVAL layout against Yosys' own DP16KD mapping,
the simulation model against that layout, the portable fallback's latency) and the
requantizer's registered MULT18X18D (``rtl/ecp5_dsp.py``); the accelerator with both,
co-simulated bit- and cycle-exact."""

import json
import random
import shutil
import subprocess

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from conftest import random_network
from ternac.cosim.accelerator_sim import (
    capacity_config,
    golden_infer_step,
    golden_load_step,
    random_inputs,
    run_rtl_program,
    union_config,
)
from ternac.cosim.ecp5_sim import build_ecp5_accelerator
from ternac.fpga.build import tool_environment
from ternac.model.codebook import TernacError
from ternac.model.hw import lower, size_config
from ternac.rtl.accelerator import Accelerator
from ternac.rtl.ecp5_bram import (
    DP16KD_SHAPES,
    RegisteredBuffer,
    dp16kd_init,
    dp16kd_shape,
    dp16kd_simulation_model,
    registered_weight_memory,
)
from ternac.rtl.requant import Requantizer


def test_shape_is_the_widest_deep_enough():
    assert dp16kd_shape(4224) == (2, 8192)          # 784-256-256-10: 32 blocks for 64 bits
    assert dp16kd_shape(1024) == (18, 1024)
    assert dp16kd_shape(1025) == (9, 2048)
    with pytest.raises(TernacError, match="at most 16384 words"):
        dp16kd_shape(16385)


def _yosys_initvals(bits, words, tmp_path):
    """INITVAL parameters of the one DP16KD that synth_ecp5 makes of an inferred memory."""
    init = [(7 * i + 3) % (1 << bits) for i in range(words)]
    m = Module()
    m.submodules.mem = mem = Memory(shape=bits, depth=words, init=init)
    rp, wp = mem.read_port(), mem.write_port()
    ports = [rp.addr, rp.data, wp.addr, wp.data, wp.en]
    (tmp_path / "mem.il").write_text(rtlil.convert(m, ports=ports))
    yosys = tool_environment(tmp_path)["YOSYS"]
    subprocess.run([yosys, "-q", "-p", "read_rtlil mem.il; synth_ecp5 -top top; write_json mem.json"],
                   cwd=tmp_path, check=True)
    cells = [c for mod in json.loads((tmp_path / "mem.json").read_text())["modules"].values()
             for c in mod["cells"].values() if c["type"] == "DP16KD"]
    assert len(cells) == 1
    return init, {f"p_{k}": int(v, 2) for k, v in cells[0]["parameters"].items() if k.startswith("INITVAL_")}


@pytest.mark.parametrize("bits", [2, 9, 18])
def test_init_layout_is_yosys(bits, tmp_path):
    words = dict(DP16KD_SHAPES)[bits]
    init, yosys = _yosys_initvals(bits, words, tmp_path)
    ours = {name: const.value for name, const in dp16kd_init(init, bits).items()}
    assert ours == yosys


_BENCH = """
module bench;
    reg clk = 0, we = 0;
    reg [13:0] ra = 0, wa = 0;
    reg [17:0] wd = 0;
    wire [17:0] q;
    integer i;
    DP16KD #(.DATA_WIDTH_A({bits}), .DATA_WIDTH_B({bits}), .REGMODE_A("OUTREG"){initvals}) dut(
        {ports}
        .CLKA(clk), .CEA(1'b1), .OCEA(1'b1), .WEA(1'b0), .RSTA(1'b0),
        .CLKB(clk), .CEB(1'b1), .OCEB(1'b1), .WEB(we), .RSTB(1'b0),
        .CSA2(1'b0), .CSA1(1'b0), .CSA0(1'b0), .CSB2(1'b0), .CSB1(1'b0), .CSB0(1'b0));
    always #1 clk = ~clk;
    initial begin
        // Read every word: its data leaves the output register two clocks after the address.
        for (i = 0; i < {words} + 2; i = i + 1) begin
            @(negedge clk) ra = i << {shift};
            if (i >= 2) $display("R %0d %0d", i - 2, q);
        end
        // Write then read back word 5.
        @(negedge clk) begin we = 1; wa = (5 << {shift}) | {be}; wd = {value}; end
        @(negedge clk) begin we = 0; ra = 5 << {shift}; end
        @(negedge clk); @(negedge clk) $display("W 5 %0d", q);
        $finish;
    end
endmodule
"""


@pytest.mark.cosim
@pytest.mark.skipif(not shutil.which("iverilog"), reason="needs Icarus Verilog")
@pytest.mark.parametrize("bits", [2, 9, 18])
def test_simulation_model_reads_the_layout(bits, tmp_path):
    """The model reads what :func:`dp16kd_init` (Yosys' layout) put in, through OUTREG."""
    words = dict(DP16KD_SHAPES)[bits]
    rng = random.Random(bits)
    init = [rng.randrange(1 << bits) for _ in range(words)]
    params = dp16kd_init(init, bits)
    shift = 14 - (words.bit_length() - 1)
    value = rng.randrange(1 << bits)
    bench = _BENCH.format(
        bits=bits, words=words, shift=shift, be=3 if bits == 18 else 0, value=value,
        initvals="".join(f", .{name[2:]}(320'h{const.value:x})" for name, const in params.items()),
        ports=" ".join([f".ADA{i}(ra[{i}]), .ADB{i}(wa[{i}])," for i in range(14)]
                       + [f".DIB{i}(wd[{i}]), .DIA{i}(1'b0), .DOA{i}(q[{i}])," for i in range(18)]))
    (tmp_path / "bench.v").write_text(bench)
    (tmp_path / "DP16KD.v").write_text(dp16kd_simulation_model())
    subprocess.run(["iverilog", "-g2012", "-o", "bench.vvp", "bench.v", "DP16KD.v"], cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "bench.vvp"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    reads = {int(a): int(q) for kind, a, q in (line.split() for line in out.splitlines() if line[:1] in "RW")
             if kind == "R"}
    assert reads == dict(enumerate(init))
    assert f"W 5 {value}" in out


_PORT_BENCH = """
`timescale 1ns / 100ps
module bench;
    reg clk = 0, ren = 0;
    reg [{aw}:0] ra = 0, wa = 0;
    reg [{dw}:0] wd = 0;
    reg [{ew}:0] we = 0;
    wire [{dw}:0] q;
    wb dut(.clk(clk), .rst(1'b0), .read__addr(ra), .read__en(ren), .read__data(q),
           .write__addr(wa), .write__data(wd), .write__en(we));
    always #1 clk = ~clk;
    initial begin
{steps}
        $finish;
    end
endmodule
"""


@pytest.mark.cosim
@pytest.mark.skipif(not shutil.which("iverilog"), reason="needs Icarus Verilog")
@pytest.mark.parametrize(("depth", "copies"), [(300, False), (1500, False), (3000, False), (3000, True)])
def test_byte_writes_and_held_reads(depth, copies, tmp_path):
    """A byte-granular buffer (the activation buffers') as DP16KDs (1K x 18, 2K x 9, 4K x 4
    blocks) and as its fallback, both in Icarus against a model of the port: two-cycle reads
    that hold while ``en`` is low, byte writes, baked initial words; with ``address_copies``
    the inputs registered twice first (four-cycle reads, writes two cycles later)."""
    width, rng = 24, random.Random(depth)
    init = [rng.randrange(1 << width) for _ in range(depth)]
    steps, seen = [], []
    mem, q, r = list(init), 0, 0
    lead = 2 if copies else 0                       # input registers
    addresses, writes = [0] * lead, [(0, 0, 0)] * lead
    for step in range(300):
        ra, ren = rng.randrange(depth), step < 2 or rng.random() < 0.7
        wa, wd, we = rng.randrange(depth), rng.randrange(1 << width), rng.randrange(8) * (rng.random() < 0.5)
        if we and wa == ra:
            we = 0                                  # a read and a write of one word: undefined
        steps.append(f"        @(negedge clk) begin ra = {ra}; ren = {int(ren)}; wa = {wa}; wd = {wd}; we = {we}; "
                     f"end\n        @(posedge clk) #0.5 $display(\"Q %0d\", q);")
        addresses, writes = [*addresses, ra], [*writes, (wa, wd, we)]
        (wa, wd, we), writes = writes[0], writes[1:]
        if ren:
            q, r, addresses = mem[addresses[0]], q, addresses[1:]
        else:
            addresses = addresses[:-1]
        for byte in range(3):
            if we >> byte & 1:
                mask = 0xFF << 8 * byte
                mem[wa] = mem[wa] & ~mask | wd & mask
        seen.append(r)
    seen = seen[lead + 2:]                          # before that, the fallback's registers hold x
    bench = _PORT_BENCH.format(aw=(depth - 1).bit_length() - 1, dw=width - 1, ew=2, steps="\n".join(steps))
    (tmp_path / "bench.v").write_text(bench)
    (tmp_path / "DP16KD.v").write_text(dp16kd_simulation_model())
    for primitive in (True, False):
        dut = RegisteredBuffer(depth=depth, width=width, init=init, granularity=8, address_copies=copies,
                               primitive=primitive)
        (tmp_path / "wb.v").write_text(verilog.convert(dut, name="wb"))
        subprocess.run(["iverilog", "-g2012", "-o", "bench.vvp", "bench.v", "wb.v", "DP16KD.v"],
                       cwd=tmp_path, check=True)
        out = subprocess.run(["vvp", "-n", "bench.vvp"], cwd=tmp_path, check=True, capture_output=True,
                             text=True).stdout
        got = [line.split()[1] for line in out.splitlines() if line.startswith("Q ")]
        assert [int(v, 0) if v != "x" else v for v in got[lead + 2:]] == seen, primitive
    assert verilog.convert(dut, name="wb").count("DP16KD") == 0


def test_fallback_reads_in_two_cycles():
    dut = RegisteredBuffer(depth=40, width=21, init=[3 * i for i in range(40)], primitive=False)
    seen = []

    async def bench(ctx):
        for address in range(10):
            ctx.set(dut.read.addr, address)
            await ctx.tick()
            seen.append(ctx.get(dut.read.data))
        ctx.set(dut.write.addr, 9)
        ctx.set(dut.write.data, 1000)
        ctx.set(dut.write.en, 1)
        await ctx.tick()
        ctx.set(dut.write.en, 0)
        ctx.set(dut.read.addr, 9)
        await ctx.tick().repeat(2)
        seen.append(ctx.get(dut.read.data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Address k is presented before tick k: its word is out after tick k + 1.
    assert seen[1:10] == [3 * i for i in range(9)] and seen[10] == 1000


def test_verilog_instantiates_registered_blocks():
    text = verilog.convert(RegisteredBuffer(depth=4224, width=64, primitive=True), name="wb")
    assert text.count("DP16KD ") == 32 and text.count('.REGMODE_A("OUTREG")') == 32
    assert text.count(".DATA_WIDTH_A(32'd2)") == 32
    small = verilog.convert(RegisteredBuffer(depth=300, width=64, primitive=True), name="wb")
    assert small.count("DP16KD ") == 4                # 1K x 18: four blocks, no depth mux
    assert "DP16KD" not in verilog.convert(RegisteredBuffer(depth=300, width=64, primitive=False), name="wb")


def test_requantizer_product_in_a_registered_mult18x18d():
    text = verilog.convert(Requantizer(acc_bits=17, tag_bits=4, dsp=True), name="rq")
    assert text.count("MULT18X18D ") == 1 and " * " not in text
    for register in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert f'.{register}("CLK0")' in text
    assert "MULT18X18D" not in verilog.convert(Requantizer(acc_bits=17, tag_bits=4), name="rq")
    with pytest.raises(TernacError, match="19-bit biased accumulator does not fit"):
        verilog.convert(Requantizer(acc_bits=18, tag_bits=4, dsp=True), name="rq")


def test_weight_memory_latency_must_fit_the_design():
    config = capacity_config(8, (8, 2), act_depth=16, weight_depth=64, param_depth=64)
    with pytest.raises(TernacError, match="4-cycle read"):
        verilog.convert(Accelerator(config, weight_memory=registered_weight_memory), name="top")


@pytest.mark.cosim
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dp16kd_accelerator_bit_and_cycle_exact(sim):
    # The ECP5 build's accelerator: a network baked into the blocks' INITVAL runs first, then a
    # second one is loaded over it through port B; both bit- and cycle-exact.
    baked, loaded = random_network([100, 64, 32, 10], seed=210), random_network([33, 17, 8], seed=211)
    config = union_config([size_config(net, weight_register=True) for net in (baked, loaded)])
    baked_program, loaded_program = lower(baked, config), lower(loaded, config)
    samples = 4 if sim == "verilator" else 2
    steps = [golden_infer_step(baked, baked_program, random_inputs(baked, samples, seed=1), layer_cycles=True),
             golden_load_step(loaded_program),
             golden_infer_step(loaded, loaded_program, random_inputs(loaded, samples, seed=2), layer_cycles=True)]
    design = build_ecp5_accelerator(config, sim=sim, program=baked_program)
    result = run_rtl_program(design, steps, name=f"dp16kd-{sim}", label="dp16kd")
    infers = [s for s in result.output["steps"] if s["op"] == "infer"]
    assert [len(s["outputs"]) for s in infers] == [samples, samples]
    assert result.output["mismatches"] == 0 and not result.output["problems"]
    assert result.output["checked"] > 0
