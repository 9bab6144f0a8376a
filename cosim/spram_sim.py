"""Co-simulation of the accelerator with its weight buffer in iCE40 SPRAM (``ternac.rtl.spram``).

The Verilog instantiates ``SB_SPRAM256KA`` (as the iCE40 build does); Verilator and Icarus
simulate it with Yosys' own model of the primitive, compiled in as an extra source. SPRAM
has no initial contents, so the weights always arrive through ``load``.
"""

import functools

from ternac.model.codebook import TernacError
from ternac.model.hw import HardwareConfig
from ternac.rtl.spram import spram_simulation_model, spram_weight_memory

from . import runner
from .accelerator_sim import TOPLEVEL, design_config

__all__ = ["build_spram_accelerator", "spram_accelerator_design", "spram_model_path"]


def spram_model_path():
    """The SB_SPRAM256KA model, written once under the co-simulation build root."""
    return runner.model_source("SB_SPRAM256KA", spram_simulation_model())


def spram_accelerator_design(hardware, image=None):
    """Factory for :func:`ternac.cosim.runner.build_design`: the accelerator, weights in SPRAM."""
    from ternac.rtl.accelerator import Accelerator

    if image:
        raise TernacError("the SPRAM weight buffer has no initial contents: nothing can be baked in")
    return Accelerator(HardwareConfig.from_dict(hardware),
                       weight_memory=functools.partial(spram_weight_memory, primitive=True))


def build_spram_accelerator(config, *, sim="verilator", waves=None):
    """Generate and compile the SPRAM accelerator for ``config`` (cached per configuration)."""
    return runner.build_design(spram_accelerator_design, design_config(config), sim=sim,
                               toplevel=TOPLEVEL, waves=waves, extra_sources=[spram_model_path()])
