"""The ECP5's 18 x 18 multiplier (``MULT18X18D``) with its input and output registers.

Yosys 0.70 maps a product onto MULT18X18D but leaves the registers around it in the fabric,
so the product's 3.9 ns through the block sat between two fabric flip-flops with routing on
both sides: the 64-64-10 pin build's critical path once the weights read through DP16KD
output registers (docs/fpga.md). Instantiated with ``REG_INPUTA/B`` and ``REG_OUTPUT`` on
the clock, the block holds both registers itself.
"""

from amaranth.hdl import ClockSignal, Const, Instance

from .ecp5_bram import verilog_bus

__all__ = ["MULT_PORT_BITS", "mult18x18d", "mult18x18d_simulation_model"]

#: Bits of each signed multiplier input.
MULT_PORT_BITS = 18


def mult18x18d(a, b, p):
    """A MULT18X18D computing ``p = a * b`` (signed) two cycles later: ``a`` and ``b`` into
    the block's input registers, the product out of its output register.

    ``a`` and ``b`` are signed values of at most :data:`MULT_PORT_BITS` bits (sign-extended
    here); ``p`` takes the low ``len(p)`` bits of the 36-bit product."""
    if len(a) > MULT_PORT_BITS or len(b) > MULT_PORT_BITS or len(p) > 2 * MULT_PORT_BITS:
        raise ValueError(f"MULT18X18D multiplies two signed {MULT_PORT_BITS}-bit values, "
                         f"not {len(a)} x {len(b)} into {len(p)} bits")
    ports = {}
    for i in range(MULT_PORT_BITS):
        ports[f"i_A{i}"] = a[min(i, len(a) - 1)]
        ports[f"i_B{i}"] = b[min(i, len(b) - 1)]
        ports[f"i_C{i}"] = Const(0)
    for i in range(len(p)):
        ports[f"o_P{i}"] = p[i]
    return Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
        p_GSR="DISABLED", p_RESETMODE="SYNC",
        i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
        i_CLK0=ClockSignal("sync"), i_CE0=Const(1), i_RST0=Const(0),
        **ports)


def mult18x18d_simulation_model():
    """Verilog of a MULT18X18D model for Verilator and Icarus: signed or unsigned ``A * B``
    with the input (A, B), pipeline and output registers each on ``CLK0`` when its
    ``REG_*_CLK`` parameter says so, enabled by ``CE0`` (Yosys ships the primitive as a
    black box only). Other clocks, the C input, resets, cascades and shift-in are not
    modelled: the ports :func:`mult18x18d` leaves open are not declared."""
    bus = verilog_bus
    a, b, c = (", ".join(f"{x}{i}" for i in range(18)) for x in "ABC")
    p = ", ".join(f"P{i}" for i in range(36))
    return f"""// A MULT18X18D model for simulation: ternac.rtl.ecp5_dsp.mult18x18d_simulation_model().
module MULT18X18D({a}, {b}, {c}, {p}, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0);
    input {a};
    input {b};
    input {c};
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
    output {p};
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter RESETMODE = "SYNC";
    wire [17:0] a = {bus("A", 18)}, b = {bus("B", 18)};
    reg [17:0] a_r = 18'd0, b_r = 18'd0;
    reg [35:0] m_r = 36'd0, p_r = 36'd0;
    wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_r : a;
    wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_r : b;
    wire [35:0] a_x = {{{{18{{SIGNEDA & a_in[17]}}}}, a_in}};
    wire [35:0] b_x = {{{{18{{SIGNEDB & b_in[17]}}}}, b_in}};
    wire [35:0] m = a_x * b_x;
    wire [35:0] m_in = REG_PIPELINE_CLK == "CLK0" ? m_r : m;
    always @(posedge CLK0) if (CE0) begin
        a_r <= a;
        b_r <= b;
        m_r <= m;
        p_r <= m_in;
    end
    assign {bus("P", 36)} = REG_OUTPUT_CLK == "CLK0" ? p_r : m_in;
endmodule
"""
