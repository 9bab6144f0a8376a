"""Simulation speed of the accelerator: Verilator vs Icarus vs Amaranth's simulator, in one run.

``python -m ternac.cosim.simspeed [--json] [--out FILE] [--fresh]`` builds a random
784-256-256-10 network, (8,2) coding, P = 8 lanes, and runs it:

* on Verilator and on Icarus through the cocotb test bench of :mod:`ternac.cosim.accelerator_tb`
  (weights written through the ``load`` port, every output checked, cycles compared with
  the model); the rate counts the clock cycles of the inferences over the wall time the
  simulator spent on them (measured inside the simulator, so start-up and loading are
  excluded and reported separately);
* on Amaranth's Python simulator (:func:`ternac.rtl.simulate.run_rtl_network`, weights baked
  into the memories), where elaboration is timed separately from simulation.

It prints a table and writes the numbers as JSON (``build/simspeed.json`` by default).
``--fresh`` builds into a temporary directory so the build times are real compiles.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCH = "mlp:784-256-256-10"


def speed_network(seed=0):
    """The benchmark network: a random (untrained) 784-256-256-10 MLP, (8,2), 8 lanes."""
    import torch
    from ternac.model.arch import build_arch
    from ternac.model.codebook import Coding
    from ternac.model.convert import quantize_network

    model = build_arch(ARCH, (1, 28, 28), 10, seed=seed).eval()
    calibration = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return quantize_network(model, Coding(8, 2), calibration, lanes=8)


def measure_hdl(network, x, sim):
    """One cocotb run on ``sim``; returns a result row."""
    from ternac.model.hw import lower

    from .accelerator_sim import build_accelerator, sim_network

    config = lower(network, lanes=8).config
    started = time.perf_counter()
    design = build_accelerator(config, sim=sim)
    build_seconds = time.perf_counter() - started
    run = sim_network(network, x, sim=sim, config=config, layer_cycles=False,
                      name=f"simspeed-{sim}", strict=True)
    return {
        "simulator": sim, "samples": run.samples, "bit_exact": run.bit_exact,
        "cycles_per_inference": run.measured[0], "predicted_cycles": run.predicted["total"],
        "cycles_exact": run.cycles_exact,
        "sim_cycles": run.sim_cycles, "sim_seconds": run.sim_seconds,
        "sim_cycles_per_second": run.sim_cycles_per_second,
        "seconds_per_inference": run.seconds_per_inference,
        "build_seconds": build_seconds, "fresh_build": design.fresh,
        "startup_and_load_seconds": run.wall_seconds - run.build_seconds - run.sim_seconds,
    }


def measure_amaranth(network, x):
    from amaranth.sim import Simulator
    from ternac.model.hw import lower
    from ternac.rtl.accelerator import Accelerator
    from ternac.rtl.simulate import run_rtl_network

    from .accelerator_sim import golden_outputs

    program = lower(network, lanes=8)
    started = time.perf_counter()
    Simulator(Accelerator.for_program(program))         # elaboration alone, for the split
    elaborate = time.perf_counter() - started
    started = time.perf_counter()
    run = run_rtl_network(Accelerator.for_program(program), x, program=program)
    total = time.perf_counter() - started
    sim_seconds = max(total - elaborate, 1e-9)
    cycles = sum(run.measured) + len(x)                # plus one idle tick after each inference
    predicted = program.cycles.total
    return {
        "simulator": "amaranth", "samples": len(x),
        "bit_exact": bool(np.array_equal(run.outputs, golden_outputs(network, x))),
        "cycles_per_inference": run.measured[0], "predicted_cycles": predicted,
        "cycles_exact": run.measured == [predicted] * len(x) == run.cycles,
        "sim_cycles": cycles, "sim_seconds": sim_seconds,
        "sim_cycles_per_second": cycles / sim_seconds,
        "seconds_per_inference": sim_seconds / len(x),
        "build_seconds": elaborate, "fresh_build": True, "startup_and_load_seconds": 0.0,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ternac.cosim.simspeed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON on stdout")
    parser.add_argument("--out", default="build/simspeed.json", help="JSON file to write")
    parser.add_argument("--verilator-samples", type=int, default=20)
    parser.add_argument("--icarus-samples", type=int, default=3)
    parser.add_argument("--amaranth-samples", type=int, default=3)
    parser.add_argument("--simulators", default="verilator,icarus,amaranth",
                        help="comma-separated subset to run")
    parser.add_argument("--fresh", action="store_true",
                        help="build in a temporary directory (real build times)")
    args = parser.parse_args(argv)

    from .accelerator_sim import random_inputs

    def log(text):
        print(text, file=sys.stderr, flush=True)

    if args.fresh:
        os.environ["TERNAC_COSIM_BUILD"] = tempfile.mkdtemp(prefix="ternac-simspeed-")
    network = speed_network()
    counts = {"verilator": args.verilator_samples, "icarus": args.icarus_samples,
              "amaranth": args.amaranth_samples}
    rows = []
    for sim in args.simulators.split(","):
        x = random_inputs(network, counts[sim], seed=1)
        log(f"{sim}: {len(x)} inference(s) of {ARCH} ...")
        row = measure_amaranth(network, x) if sim == "amaranth" else measure_hdl(network, x, sim)
        rows.append(row)
    report = {
        "network": ARCH, "coding": "(8,2)", "lanes": 8,
        "command": "python -m ternac.cosim.simspeed " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.machine()},
        "results": rows,
    }
    lines = [(f"{'simulator':>10} {'samples':>7} {'bit-exact':>9} {'cycles':>7} {'predicted':>9} "
              f"{'cycles/s':>10} {'s/inference':>11} {'build s':>8}")]
    for row in rows:
        lines.append(f"{row['simulator']:>10} {row['samples']:>7} {row['bit_exact']!s:>9} "
                     f"{row['cycles_per_inference']:>7} {row['predicted_cycles']:>9} "
                     f"{row['sim_cycles_per_second']:>10,.0f} "
                     f"{row['seconds_per_inference']:>11.4f} "
                     f"{row['build_seconds']:>8.1f}")
    log("\n".join(lines))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"written {out}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
