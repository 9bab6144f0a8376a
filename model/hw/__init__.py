"""Everything hardware-derived: the accelerator's configuration, the lowering of a network
onto it (:func:`lower`, the only code that maps a network onto hardware) and the cycle model."""

from .config import ADDRESS_BITS, LOAD_BITS, HardwareConfig, Target, field_width, pack_fields
from .cycles import BUFFER_WRITE, DRAIN_TO_WRITE, ISSUE_TO_LATCH, CycleReport
from .lower import (
    ACTIONS,
    AcceleratorProgram,
    LayerDescriptor,
    Pass,
    Walk,
    array_coding,
    decoder_tables,
    default_table,
    fused_layers,
    lower,
    mapping_problem,
    plan,
    size_config,
)
from .status import transfer_beats

__all__ = [
    "ACTIONS", "ADDRESS_BITS", "BUFFER_WRITE", "DRAIN_TO_WRITE", "ISSUE_TO_LATCH", "LOAD_BITS",
    "AcceleratorProgram", "CycleReport", "HardwareConfig", "LayerDescriptor", "Pass", "Target",
    "Walk", "array_coding", "decoder_tables", "default_table", "field_width", "fused_layers",
    "lower", "mapping_problem", "pack_fields", "plan", "size_config", "transfer_beats",
]
