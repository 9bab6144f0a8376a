"""Co-simulation of the accelerator as the ECP5 builds make it: the weight buffer, the
activation buffers and the parameter memory in DP16KD blocks read through their output
registers (``ternac.rtl.ecp5_bram``), the requantizer's product in a registered MULT18X18D
(``ternac.rtl.ecp5_dsp``).

The Verilog instantiates both primitives (as the ECP5 build does); Verilator and Icarus
simulate them with :func:`~ternac.rtl.ecp5_bram.dp16kd_simulation_model` and
:func:`~ternac.rtl.ecp5_dsp.mult18x18d_simulation_model`, compiled in as extra sources.
Baked weights become the blocks' ``INITVAL`` parameters.
"""

from ternac.model.codebook import TernacError
from ternac.model.hw import HardwareConfig
from ternac.rtl.ecp5_bram import dp16kd_simulation_model
from ternac.rtl.ecp5_dsp import mult18x18d_simulation_model

from . import runner
from .accelerator_sim import TOPLEVEL, design_config

__all__ = ["build_ecp5_accelerator", "ecp5_accelerator_design"]


def ecp5_accelerator_design(hardware, image=None):
    """Factory for :func:`ternac.cosim.runner.build_design`: the accelerator with its memories
    in DP16KD instances, its requantizer's product in a MULT18X18D, and its activity
    counters."""
    from ternac.model.hw.config import Target
    from ternac.rtl.accelerator import Accelerator

    config = HardwareConfig.from_dict(hardware)
    if not config.weight_register:
        raise TernacError("the DP16KD buffers read through a register: weight_register designs only")
    image = {Target[name.upper()]: words for name, words in (image or {}).items()}
    return Accelerator(config, image=image or None, activity=not config.dense, dsp=True, bram=True)


def build_ecp5_accelerator(config, *, sim="verilator", program=None, waves=None):
    """Generate and compile the DP16KD accelerator for ``config`` (cached per configuration);
    with ``program`` its images are baked in (the weights as ``INITVAL``)."""
    image = program.images if program is not None else None
    return runner.build_design(ecp5_accelerator_design, design_config(config, image), sim=sim,
                               toplevel=TOPLEVEL, waves=waves,
                               extra_sources=[runner.model_source("DP16KD", dp16kd_simulation_model()),
                                              runner.model_source("MULT18X18D", mult18x18d_simulation_model())])
