"""Design-space exploration (``ternac dse``): a SIMQ-NAS-style search of the per-layer coding
policy together with the layer widths and the lane count P.

Modules by concern: :mod:`.space` (what a design point is), :mod:`.area` (the LUT model fitted
to FPGA builds), :mod:`.objectives` (bits, energy, cycles, LUTs of a trained network),
:mod:`.evaluate` (train one point; runs in a worker), :mod:`.runner` (local processes or Ray),
:mod:`.predictor` (the LINAS-style accuracy predictor that screens candidates),
:mod:`.search` (Optuna's NSGA-II in ask/tell form), :mod:`.front` (Pareto front, JSON, plot),
:mod:`.cmd` (the command).
"""
