"""cocotb co-simulation of the generated Verilog on Verilator and Icarus.

:mod:`.toolchain` finds the simulators, :mod:`.runner` builds a design once per configuration
and runs cocotb tests on it, :mod:`.streams` drives and monitors Amaranth streams from cocotb,
:mod:`.scoreboard` compares outputs with the golden model.
"""
