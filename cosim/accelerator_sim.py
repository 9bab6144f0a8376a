"""Run networks on the generated accelerator Verilog (Verilator, Icarus) against the golden model.

This is the pytest-process half of the accelerator co-simulation; the simulator half is
:mod:`ternac.cosim.accelerator_tb`. The split keeps the two independent:

* ``golden_*`` functions compute what the accelerator must produce -- int8 outputs from
  :func:`ternac.model.reference.golden_network`; cycle counts and load beats from the
  lowered network, :func:`ternac.model.hw.lower` -- and package them as *steps* of a bench
  script;
* ``run_rtl_*`` / ``sim_*`` functions build the Verilog (cached per configuration by
  :func:`ternac.cosim.runner.build_design`) and run a program on it. The test bench only
  drives streams, unpacks bytes and compares; it never calls the golden model.

Typical use::

    program = lower(network, lanes=8)
    design = build_accelerator(program.config, sim="verilator")  # no weights baked in
    steps = [golden_load_step(program), golden_infer_step(network, program, x)]
    result = run_rtl_program(design, steps)                     # raises CosimFailure on a mismatch

or, for one network end to end, :func:`sim_network`.

One build serves many networks: the memories are written through the ``load`` port, so any
network that fits the configuration (see :func:`union_config`) runs on the same Verilog.
With ``image=`` the network is baked into the memory initial values instead.
"""

import math
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ternac.model.arith import acc_bits
from ternac.model.codebook import Coding, TernacError
from ternac.model.datasets import random_inputs
from ternac.model.hw import HardwareConfig, Target, lower
from ternac.model.reference import golden_network

from . import runner

__all__ = [
    "TB", "TOPLEVEL", "SimRun",
    "accelerator_design", "build_accelerator", "capacity_config",
    "design_config", "golden_budget", "golden_infer_step", "golden_load_step",
    "golden_outputs", "golden_predicted", "golden_reset_step", "random_inputs",
    "run_rtl_program", "sim_network", "union_config",
]

#: The cocotb test bench module.
TB = "ternac.cosim.accelerator_tb"
#: Verilog name of the accelerator's top module.
TOPLEVEL = "ternac_accelerator"


# -- design ---------------------------------------------------------------------------------

def union_config(configs):
    """The smallest configuration on which every network of ``configs`` fits.

    All must share lanes, coding and ``dense``; depths, accumulator and code width are the
    largest of any. A writable decoder table, the convolution walk, fused pooling, tap packing,
    average and max pooling and a row-serial layer table are built if any of them has one.
    """
    configs = list(configs)
    first = configs[0]
    for config in configs[1:]:
        if (config.lanes, config.coding, config.dense) != (first.lanes, first.coding, first.dense):
            raise TernacError(f"cannot merge configurations with different lanes/coding: "
                              f"{config} and {first}")
    values = first.to_dict()
    for name in ("code_bits", "weight_depth", "act_depth", "param_depth", "layer_depth",
                 "acc_bits", "codebook_depth"):
        values[name] = max(getattr(config, name) for config in configs)
    depths = tuple(max(config.buffer_depths[b] for config in configs) for b in (0, 1))
    values["act_depths"] = depths if depths != (values["act_depth"],) * 2 else ()
    for name in ("conv_walk", "fused_pool", "tap_packing", "avg_pool", "max_pool", "serial_layers",
                 "weight_register"):
        values[name] = any(getattr(config, name) for config in configs)
    if not values["codebook_depth"]:
        values["code_bits"] = first.coding.code_bits
    return HardwareConfig.from_dict(values)


def capacity_config(lanes, coding, *, act_depth, weight_depth, param_depth, layer_depth=4,
                    codebook_depth=0, code_bits=None):
    """A configuration sized for any network within the given depths (one build for many).

    The accumulator is wide enough for the largest fan-in ``act_depth * N``; ``code_bits``
    defaults to the coding's (required for the default-codebook ROM).
    """
    coding = coding if isinstance(coding, Coding) else Coding(*coding)
    return HardwareConfig(
        lanes=lanes, coding=coding, code_bits=code_bits or coding.code_bits,
        weight_depth=weight_depth, act_depth=act_depth, param_depth=param_depth,
        layer_depth=layer_depth, acc_bits=acc_bits(act_depth * coding.n, coding),
        codebook_depth=codebook_depth)


def image_to_json(image):
    return {Target(target).name.lower(): [int(word) for word in words]
            for target, words in image.items() if words}


def design_config(config, image=None):
    """The runner configuration (a dict of :func:`accelerator_design` arguments)."""
    return {"hardware": config.to_dict(),
            "image": image_to_json(image) if image else None}


def accelerator_design(hardware, image=None):
    """Factory for :func:`ternac.cosim.runner.build_design`: the Amaranth accelerator, with its
    activity counters (the bench checks them against :meth:`AcceleratorProgram.actions`)."""
    from ternac.rtl.accelerator import Accelerator

    config = HardwareConfig.from_dict(hardware)
    image = {Target[name.upper()]: words for name, words in (image or {}).items()}
    return Accelerator(config, image=image or None, activity=not config.dense)


def build_accelerator(config, *, sim="verilator", program=None, waves=None,
                      factory=accelerator_design):
    """Generate and compile the accelerator for ``config`` (cached per configuration).

    With ``program`` (a network lowered onto ``config``) its memory images are baked into the
    Verilog; otherwise the memories start empty and a bench script loads them through ``load``.
    """
    image = program.images if program is not None else None
    return runner.build_design(factory, design_config(config, image), sim=sim,
                               toplevel=TOPLEVEL, waves=waves)


# -- golden side ----------------------------------------------------------------------------

def _as_int8_batch(network, x):
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TernacError(f"inputs must be int8, got {x.dtype}")
    return x.reshape(len(x), -1)


def golden_outputs(network, x, head=None):
    """The golden model's outputs (of output ``head`` for a network with heads): (B, O) int8."""
    x = _as_int8_batch(network, x)
    out = golden_network(network, x.reshape((len(x),) + tuple(network.input_shape)))
    if network.heads:
        out = out[head or 0]
    return np.asarray(out).reshape(len(x), -1)


def golden_predicted(program):
    """The cycle model of one inference as a dict: input, layers (list), output, total."""
    report = program.cycles.to_dict()
    return {key: report[key] for key in ("input", "layers", "output", "total")}


#: Cycle budgets of the bench's waits: this many times what the cycle model predicts ...
BUDGET_MARGIN = 2
#: ... plus these cycles, so that a tiny step still has room for a reset or a buffer swap.
BUDGET_SLACK = 64


def golden_budget(cycles, *, idle_probability=0.0, max_idle=4, stall_probability=0.0):
    """Cycles the bench may wait for something that takes ``cycles`` on the cycle model.

    Random idle cycles on the input (gaps of 1 to ``max_idle``) and back-pressure on the
    output slow the streams down by a mean factor of at most ``1 + p * max_idle`` and
    ``1 / (1 - q)``; the budget is :data:`BUDGET_MARGIN` times the stretched count plus
    :data:`BUDGET_SLACK`. A correct design never comes near it; a hung one fails within it.
    """
    if not 0 <= stall_probability < 1:
        raise TernacError(f"stall probability must be in [0, 1), got {stall_probability}")
    stretch = (1 + idle_probability * max_idle) / (1 - stall_probability)
    return math.ceil(BUDGET_MARGIN * cycles * stretch) + BUDGET_SLACK


def golden_load_step(program, *, idle_probability=0.0, seed=0):
    """A bench step writing the lowered network into the accelerator through ``load``.

    The load port takes a beat every cycle, so waiting on it is budgeted by the beat count.
    """
    beats = program.load_beats()
    return {"op": "load", "beats": beats, "idle_probability": idle_probability, "seed": seed,
            "timeout_cycles": golden_budget(len(beats))}


def golden_infer_step(network, program, x, *, idle_probability=0.0, max_idle=4,
                      stall_probability=0.0, seed=0, layer_cycles=False, first_sample=0,
                      check_cycles=None, progress_file=None):
    """A bench step running int8 inputs ``x`` (B, ...) with the golden outputs to expect.

    The bench also checks each inference's activity counters (if the design has them)
    against the program's ``actions()``. ``check_cycles`` (default: when there is neither idle nor back-pressure) makes the bench
    assert every inference takes exactly the predicted cycles.
    """
    x = _as_int8_batch(network, x)
    n = program.config.coding.n
    predicted = golden_predicted(program)
    stalls = bool(idle_probability or stall_probability)
    return {
        "op": "infer", "n": n, "layer": len(network.layers) - 1, "first_sample": first_sample,
        "inputs": [program.input_stream(row) for row in x],
        "expected": golden_outputs(network, x, program.head).astype(int).tolist(),
        "out_words": program.output_words,
        "positions": program.output_positions().tolist(),
        "actions": program.actions(),
        "predicted": predicted,
        "check_cycles": (not stalls) if check_cycles is None else check_cycles,
        "layer_cycles": layer_cycles,
        "idle_probability": idle_probability, "max_idle": max_idle,
        "stall_probability": stall_probability, "seed": seed,
        "timeout_cycles": golden_budget(predicted["total"], idle_probability=idle_probability,
                                        max_idle=max_idle, stall_probability=stall_probability),
        "progress_file": str(progress_file) if progress_file else None,
    }


def golden_reset_step(program, x, *, after_cycles, hold=2, seed=0):
    """A bench step that starts an inference on one sample ``x`` and resets it while busy."""
    return {"op": "reset", "inputs": program.input_stream(x),
            "after_cycles": after_cycles, "hold": hold, "seed": seed,
            "timeout_cycles": golden_budget(program.cycles.total)}


# -- RTL side -------------------------------------------------------------------------------

def run_rtl_program(design, steps, *, name=None, seed=None, label="accelerator"):
    """Run a bench script (list of steps) on a built accelerator; returns the :class:`CosimResult`.

    ``result.output["steps"]`` has one entry per step (for ``infer``: ``outputs``,
    ``measured``, ``onchip``, ``layer_cycles``, ``sim_cycles``, ``wall_seconds``).
    Raises :exc:`~ternac.cosim.runner.CosimFailure` if any check failed; its message starts
    with the scoreboard's first mismatch (sample, layer, neuron, expected, got).
    """
    return runner.run_test(design, TB, data={"name": label, "steps": steps}, name=name,
                           seed=seed)


@dataclass
class SimRun:
    """One network run on the simulated RTL (:func:`sim_network`)."""

    simulator: str
    expected: np.ndarray            # (B, O) golden int8
    outputs: np.ndarray             # (B, O) from the RTL (a missing sample stays zero)
    measured: list                  # cycles per inference, first act_in to last act_out
    onchip: list                    # the accelerator's own cycles counter
    predicted: dict                 # golden_predicted
    layer_cycles: list              # per inference [input, layers..., output], or []
    sim_cycles: int                 # clock cycles simulated for the inferences
    sim_seconds: float              # wall time of those cycles inside the simulator
    wall_seconds: float             # whole run including simulator start-up and loading
    build_seconds: float
    problems: list = field(default_factory=list)
    first_mismatch: str | None = None
    error: str | None = None        # message of a failing run
    waves: Path | None = None
    log: Path | None = None
    actions: list = field(default_factory=list)     # per inference the activity counters
    modelled_actions: dict | None = None            # program.actions()

    @property
    def samples(self):
        return len(self.expected)

    @property
    def mismatches(self):
        """Number of output values that differ from the golden model."""
        return int(np.count_nonzero(self.outputs != self.expected))

    @property
    def mismatched_samples(self):
        return int(np.count_nonzero((self.outputs != self.expected).any(axis=1)))

    @property
    def bit_exact(self):
        return (self.error is None and len(self.measured) == self.samples
                and self.mismatches == 0)

    @property
    def cycles_exact(self):
        total = self.predicted["total"]
        return (len(self.measured) == self.samples
                and all(m == total for m in self.measured)
                and all(c == total for c in self.onchip))

    @property
    def actions_exact(self):
        """Every inference's measured actions equal the program's; ``None`` if not measured."""
        if not self.actions:
            return None
        return (len(self.actions) == self.samples
                and all(a == self.modelled_actions for a in self.actions))

    @property
    def sim_cycles_per_second(self):
        return self.sim_cycles / self.sim_seconds if self.sim_seconds else 0.0

    @property
    def seconds_per_inference(self):
        return self.sim_seconds / max(1, len(self.measured))


@contextmanager
def _progress_watch(path, callback):
    """Call ``callback(done)`` whenever the bench reports another finished sample."""
    stop = threading.Event()

    def watch():
        seen = 0
        while not stop.wait(0.2):
            try:
                done = len(path.read_text().split())
            except OSError:
                continue
            if done != seen:
                callback(done)
                seen = done

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            callback(len(path.read_text().split()))
        except OSError:
            pass


def sim_network(network, x, *, sim="verilator", lanes=None, config=None, bake=False,
                waves=None, layer_cycles=True, idle_probability=0.0, stall_probability=0.0,
                seed=0, name=None, progress=None, strict=False, head=None):
    """Run int8 inputs ``x`` through ``network`` on the simulated RTL, against the golden model.

    A network with several outputs runs one program per output: give ``head``.

    Parameters
    ----------
    sim : ``"verilator"`` or ``"icarus"``
    lanes : int, optional
        Lanes of the accelerator (default: the network's); ignored with ``config``.
    config : HardwareConfig, optional
        Accelerator configuration (default: the smallest that runs the network).
    bake : bool
        Bake the weights into the Verilog instead of loading them through the port.
    progress : callable, optional
        Called with the number of finished samples while the simulator runs.
    strict : bool
        Raise :exc:`CosimFailure` on any mismatch instead of reporting it in the result.

    Returns
    -------
    :class:`SimRun`
    """
    program = lower(network, config, lanes=lanes, head=head)
    x = _as_int8_batch(network, x)
    started = time.perf_counter()
    design = build_accelerator(program.config, sim=sim, program=program if bake else None,
                               waves=waves)
    build_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        progress_file = Path(tmp) / "progress"
        progress_file.touch()
        steps = [] if bake else [golden_load_step(program, seed=seed)]
        infer = golden_infer_step(network, program, x, layer_cycles=layer_cycles, seed=seed,
                                  idle_probability=idle_probability,
                                  stall_probability=stall_probability,
                                  progress_file=progress_file if progress else None)
        steps.append(infer)
        error = None
        watch = _progress_watch(progress_file, progress) if progress else _null()
        with watch:
            try:
                result = run_rtl_program(design, steps, name=name, seed=seed)
            except runner.CosimFailure as failure:
                if strict:
                    raise
                result, error = failure.result, str(failure)
    output = result.output or {"steps": []}
    done = output["steps"][-1] if output["steps"] and output["steps"][-1]["op"] == "infer" else {}
    expected = np.asarray(infer["expected"], dtype=np.int8).reshape(len(x), -1)
    outputs = np.zeros_like(expected)
    for i, row in enumerate(done.get("outputs", [])):
        row = np.asarray(row, dtype=np.int64)
        outputs[i, :len(row)] = row[:expected.shape[1]]
        if len(row) < expected.shape[1]:            # missing values must count as mismatches
            outputs[i, len(row):] = ~expected[i, len(row):]
    return SimRun(
        simulator=sim, expected=expected, outputs=outputs,
        measured=done.get("measured", []), onchip=done.get("onchip", []),
        predicted=infer["predicted"], layer_cycles=done.get("layer_cycles", []),
        actions=done.get("actions", []), modelled_actions=infer["actions"],
        sim_cycles=done.get("sim_cycles", 0), sim_seconds=done.get("wall_seconds", 0.0),
        wall_seconds=time.perf_counter() - started, build_seconds=build_seconds,
        problems=output.get("problems", []), first_mismatch=output.get("first_mismatch"),
        error=error, waves=result.waves, log=result.log)


@contextmanager
def _null():
    yield
