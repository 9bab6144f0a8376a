"""The ``.tern`` file schema as data: every record's fields with type, shape rule and meaning.

:mod:`.network` writes and reads the header's records through these tables only (never through
``vars()`` of a class), and ``docs/format.md``'s field tables are generated from them::

    python -m ternac.model.schema --markdown             # print the tables
    python -m ternac.model.schema --write docs/format.md # replace the text between the markers

Adding a field is one :class:`Field` row; give it a ``default`` and it is optional, so files
written before it existed still load (no version bump). Adding a layer kind is one entry of
:data:`LAYERS` plus its class in ``network._CLASSES``. A change that old readers would misread
bumps :data:`FORMAT_VERSION` and adds a function to :data:`MIGRATIONS` that turns the previous
version's header into the new one.

Field types: ``str``, ``int``, ``float``, ``bool``, ``int[]`` (a shape), ``int[2]`` (a pair),
``object`` (free JSON), the name of a nested record of :data:`RECORDS`, or a NumPy dtype name
for an array. An array field's ``shape`` rule has one entry per axis: an ``int`` field of the
same record, a derived size of :data:`DIMENSIONS`, or ``*`` (any length).
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DIMENSIONS",
    "FORMAT_VERSION",
    "LAYERS",
    "MIGRATIONS",
    "NETWORK",
    "RECORDS",
    "Field",
    "markdown",
    "upgrade",
]

FORMAT_VERSION = 2


class _Required:
    def __repr__(self):
        return "required"


REQUIRED = _Required()


@dataclass(frozen=True)
class Field:
    """One field of a header record."""

    name: str
    type: str
    meaning: str
    shape: tuple = ()               # arrays only: one rule per axis
    default: object = REQUIRED      # a field with a default is optional in the file

    @property
    def is_array(self):
        return bool(self.shape)

    @property
    def optional(self):
        return self.default is not REQUIRED


NETWORK = (
    Field("input_shape", "int[]", "per-sample input shape: (features,) or (C, H, W)"),
    Field("input_scale", "float", "real value of one int8 step of the input"),
    Field("lanes", "int", "P, the output neurons in parallel the network was packed for", default=8),
    Field("meta", "object", "provenance: source model, data set, accuracies (free form)", default={}),
)

# the sliding window of a pooling layer and of a Conv2d
_WINDOW = (
    Field("in_h", "int", "input height"),
    Field("in_w", "int", "input width"),
    Field("kernel", "int[2]", "(kh, kw)"),
    Field("stride", "int[2]", "(sh, sw)"),
)

LAYERS = {
    "ternary": (
        Field("name", "str", "layer name, unique in the network"),
        Field("in_features", "int", "I, columns of the coded matrix (Cp*kh*kw for a Conv2d)"),
        Field("out_features", "int", "O, output neurons (channels)"),
        Field("codebook", "codebook", "the table that decodes the codes"),
        Field("codes", "uint16", "code of sub-vector v of output o (last sub-vector zero-padded)",
              shape=("out_features", "subvectors")),
        Field("scale", "float64", "alpha, real weight scale per output", shape=("out_features",)),
        Field("bias", "int64", "bias in accumulator units, within +-acc_bound", shape=("out_features",)),
        Field("mult", "int64", "requantization multiplier M, 15-bit unsigned", shape=("out_features",)),
        Field("shift", "int64", "requantization shift S, 6-bit unsigned", shape=("out_features",)),
        Field("relu", "bool", "a ReLU is fused into the requantizer"),
        Field("in_scale", "float", "real value of one int8 step of the input"),
        Field("out_scale", "float", "real value of one int8 step of the output"),
        Field("conv", "conv", "Conv2d geometry; null for a Linear layer", default=None),
        Field("neg_mult", "int64", "PReLU/LeakyReLU: signed multiplier M- for a negative biased "
              "accumulator (arith.requantize); null: ReLU or no activation",
              shape=("out_features",), default=None),
        Field("neg_shift", "int64", "PReLU/LeakyReLU: shift S- for a negative biased accumulator",
              shape=("out_features",), default=None),
    ),
    "pool": (
        Field("name", "str", "layer name"),
        Field("mode", "str", "max or avg (avg rounds half up)"),
        Field("channels", "int", "C"),
        *_WINDOW,
        Field("padding", "int[2]", "(ph, pw): max pads with -128, avg pads with zeros",
              default=(0, 0)),
        Field("ceil_mode", "bool", "PyTorch's ceil_mode window count", default=False),
        Field("count_include_pad", "bool", "avg: the divisor counts the padding zeros (PyTorch's "
              "default), else only the input values in the window", default=True),
    ),
    "relu": (
        Field("name", "str", "layer name"),
        Field("shape", "int[]", "activation shape (a ReLU not fused into a ternary layer)"),
    ),
    "flatten": (
        Field("name", "str", "layer name"),
        Field("shape", "int[]", "input shape (C, H, W), flattened C-major"),
    ),
}

RECORDS = {
    "codebook": (
        Field("n", "int", "N, weights per sub-vector"),
        Field("k", "int", "K, largest number of non-zeros per sub-vector"),
        Field("patterns", "int8", "learned codebook: pattern of each code (entry 0 all-zero); "
              "null: the default codebook in canonical order", shape=("*", "n"), default=None),
    ),
    "conv": (
        Field("in_channels", "int", "C"),
        *_WINDOW,
        Field("padding", "int[2]", "(ph, pw), zeros"),
        Field("padded_channels", "int", "Cp = ceil(C / N) * N: coded columns run (ky, kx, c) over "
              "Cp channels (model/layout.py); null: (c, ky, kx) order of version 1, golden model "
              "only", default=None),
        Field("packed_row", "int", "N: packed rows, coded columns run (ky, [kx, c]) with each "
              "kernel row's kw*C columns zero-padded to N (model/layout.py); null: not packed",
              default=None),
    ),
}

# derived array sizes: name -> (rule as documented, size from the record's raw JSON fields)
DIMENSIONS = {
    "subvectors": ("ceil(in_features / codebook.n)",
                   lambda record: -(-record["in_features"] // record["codebook"]["n"])),
}


def _v1_to_v2(header):
    """Version 1 stored ``vars(layer)``: a codebook ``{n, k, learned[, patterns]}`` and a
    conv geometry wrapped as ``{"conv": {...}}``; version 2 stores both as plain records."""
    for record in header.get("layers", []):
        book = record.get("codebook")
        if isinstance(book, dict):
            record["codebook"] = {"n": book.get("n"), "k": book.get("k"), "patterns": book.get("patterns")}
        conv = record.get("conv")
        if isinstance(conv, dict) and set(conv) == {"conv"}:
            record["conv"] = conv["conv"]
    return header


# version v -> function turning a version v header into a version v + 1 header
MIGRATIONS = {1: _v1_to_v2}


def readable_versions():
    return sorted({*MIGRATIONS, FORMAT_VERSION})


def upgrade(header, version):
    """A header of an older ``version`` brought to :data:`FORMAT_VERSION`."""
    while version < FORMAT_VERSION:
        header = MIGRATIONS[version](header)
        version += 1
    return header


# ---------------------------------------------------------------------------------------------
# docs/format.md

BEGIN = "<!-- schema tables: generated by `python -m ternac.model.schema --write docs/format.md` -->"
END = "<!-- end of the generated schema tables -->"


def shape_text(sizes):
    """``(a, b)``, ``(a,)``: a shape as Python prints a tuple, without quotes."""
    return f"({', '.join(map(str, sizes))}{',' if len(sizes) == 1 else ''})"


def _table(title, fields):
    lines = [f"**{title}**", "", "| field | type | shape | default | meaning |", "|---|---|---|---|---|"]
    for f in fields:
        default = "required" if not f.optional else ("null" if f.default is None else f"`{f.default!r}`")
        rules = [DIMENSIONS[d][0] if d in DIMENSIONS else d for d in f.shape]
        shape = f"`{shape_text(rules)}`" if f.is_array else ""
        lines.append(f"| `{f.name}` | {f.type} | {shape} | {default} | {f.meaning} |")
    return lines + [""]


def markdown():
    """The field tables of ``docs/format.md`` section 5, from the tables above."""
    versions = ", ".join(map(str, readable_versions()))
    lines = [f"Format version {FORMAT_VERSION}; this ternac reads versions {versions}.", ""]
    lines += _table("header (network)", NETWORK)
    for kind, fields in LAYERS.items():
        lines += _table(f'layer record, `"kind": "{kind}"`', fields)
    for kind, fields in RECORDS.items():
        lines += _table(f"nested record `{kind}`", fields)
    lines.append("Derived sizes: " + "; ".join(f"`{name}` = `{rule}`" for name, (rule, _) in DIMENSIONS.items())
                 + "; `*` is any length.")
    return "\n".join(lines)


def with_tables(text):
    """``text`` (docs/format.md) with the generated tables between the markers replaced."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"the markers {BEGIN!r} ... {END!r} are missing")
    return pattern.sub(lambda _: f"{BEGIN}\n\n{markdown()}\n\n{END}", text)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ternac.model.schema", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the field tables")
    group.add_argument("--write", metavar="FORMAT_MD", help="replace the tables in this file")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
    else:
        path = Path(args.write)
        path.write_text(with_tables(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
