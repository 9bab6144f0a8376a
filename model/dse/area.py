"""LUT estimate of the accelerator for a coding set and a lane count: a linear model fitted
to FPGA builds.

Source (:data:`MEASURED`): ``python -m ternac.fpga.area_sweep`` (``fpga/area_sweep.py``),
the ternary accelerator of the synthetic 64-64-10 network on the ULX3S (ECP5-85F, Yosys
``synth_ecp5``, nextpnr ``--seed 1``, 7-pin harness, weights in block RAM, PLL at 50 MHz),
``TRELLIS_COMB`` LUT4 slots, measured 2026-11-23 on this repository's RTL. The (8,2), P = 8
row is the configuration of ``docs/fpga.md``. The model is least squares on

* ``1``: the fixed logic (sequencer, requantizer, load port, activation buffers' muxing,
  harness, PLL reset);
* ``P``: per lane, the MAC array's K N:1 byte multiplexers and adders, the accumulator, the
  shadow bank and lane muxes;
* ``P * entries * table_bits / 16``: the P LUT copies of the decoder ROM (a LUT4 holds 16 bits).

Three points, three terms: the fit is exact on its source and has no residual to judge it
by. The other builds of the sweep did not give a number: P16 (8,2) and P8 (8,1) stop inside
Yosys (``MEMORY_LIBMAP`` without a message; an ``ABC_OPS_REINTEGRATE`` assertion), P4 (16,3)
was still routing after 30 minutes on the shared machine and was stopped, (8,8) was not built.

What it does not see: network size (all builds run 64-64-10; the older table in docs/fpga.md
has 784-256-256-10 about 20 % above 64-64-10 at (8,2), P = 8); a network that mixes codings
(``extrapolated``: estimated as one array with the largest ``K log2 N`` and one ROM per coding,
hardware not built yet); learned codebooks (a writable table: charged as a ROM of ``2**B``
entries, ``extrapolated``); a coding not in :data:`MEASURED` (``extrapolated``).
"""

import numpy as np

from ..codebook import Codebook

__all__ = ["COEFFICIENTS", "MEASURED", "estimate_luts", "fit", "terms"]

#: ``(P, N, K, LUT4)`` of every build of the sweep.
MEASURED = (
    (8, 8, 2, 5141),
    (4, 8, 2, 3747),
    (8, 16, 3, 8810),
)

#: Least-squares coefficients of :func:`terms` on :data:`MEASURED` (``fit(MEASURED)``).
COEFFICIENTS = (2352.9999999996517, 341.821296735301, 0.08283662963958704)


def terms(codings, lanes):
    """The model's terms for ``codings`` (``(Coding, learned bits or None)`` per layer)."""
    rom = sum((2 ** bits if bits else len(Codebook.default(c))) * c.k * c.slot_bits
              for c, bits in set(codings)) / 16
    return np.array([1.0, float(lanes), lanes * rom])


def fit(rows=MEASURED):
    """Least-squares coefficients on ``rows`` of ``(P, N, K, LUT4)``."""
    from ..codebook import Coding
    x = np.stack([terms([(Coding(n, k), None)], p) for p, n, k, _ in rows])
    y = np.array([lut for *_, lut in rows], dtype=float)
    return tuple(float(c) for c in np.linalg.lstsq(x, y, rcond=None)[0])


def estimate_luts(codings, lanes):
    """``{"luts", "extrapolated"}``: the model's LUT4 estimate; ``extrapolated`` when the point
    mixes codings or learns a codebook (no build of either exists)."""
    luts = float(np.dot(COEFFICIENTS, terms(codings, lanes)))
    distinct = set(codings)
    built = {(n, k) for _, n, k, _ in MEASURED}
    return {"luts": round(luts), "extrapolated": len(distinct) > 1 or any(
        bits or (c.n, c.k) not in built for c, bits in distinct)}

