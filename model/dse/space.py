"""The search space: a design point is a per-layer coding policy, hidden widths and lanes P.

A coding of the menu is ``"N,K"`` (the default codebook of that structure, e.g. ``8,2``) or
``"learnedB"`` (a learned per-layer codebook of ``2**B`` patterns over (8,2), e.g.
``learned6``). Only MLPs are searched: ``mlp:IN-H1-...-CLASSES`` with every hidden width from
the width menu; a network of ``H`` hidden layers has ``H + 1`` weight layers, each with its
own coding.
"""

from dataclasses import dataclass

from ..codebook import Coding, TernacError

__all__ = ["LEARNED_BASE", "Point", "Space", "parse_coding", "parse_menu"]

#: The structure a learned codebook selects its patterns from.
LEARNED_BASE = Coding(8, 2)


def parse_coding(text):
    """``(Coding, codebook_bits or None)`` of one menu entry; TernacError when unknown."""
    text = str(text).strip()
    if text.startswith("learned"):
        try:
            bits = int(text[len("learned"):])
        except ValueError:
            raise TernacError(f"unknown coding {text!r} in the menu: a learned codebook is "
                              "'learnedB' with B its code bits, e.g. learned6") from None
        if not 1 <= bits < LEARNED_BASE.code_bits:
            raise TernacError(f"unknown coding {text!r} in the menu: a learned codebook over "
                              f"{LEARNED_BASE} takes 1..{LEARNED_BASE.code_bits - 1} bits")
        return LEARNED_BASE, bits
    try:
        coding = Coding.parse(text)
    except TernacError:
        raise TernacError(f"unknown coding {text!r} in the menu: expected 'N,K' (e.g. 8,2, 16,3, "
                          "8,8) or 'learnedB' (e.g. learned6)") from None
    return coding, None


def parse_menu(text, what, convert=int, lower=1):
    """A comma- or space-separated menu (``"32,64"``); TernacError naming ``what`` if bad."""
    items = [part for part in str(text).replace(";", " ").replace(",", " ").split() if part]
    try:
        values = [convert(part) for part in items]
    except ValueError:
        raise TernacError(f"invalid {what} menu {text!r}: expected numbers such as 32,64") from None
    if not values or any(v < lower for v in values):
        raise TernacError(f"invalid {what} menu {text!r}: give at least one value >= {lower}")
    return sorted(set(values))


@dataclass(frozen=True)
class Point:
    """One design: ``codings`` per weight layer (menu entries), ``widths`` of the hidden layers,
    ``lanes`` P."""

    codings: tuple
    widths: tuple
    lanes: int

    def arch(self, inputs, classes):
        return "mlp:" + "-".join(map(str, (inputs, *self.widths, classes)))

    @property
    def train_key(self):
        """What training depends on (P does not change the network, only its hardware)."""
        return (self.codings, self.widths)

    @property
    def uniform(self):
        return len(set(self.codings)) == 1

    def train_codings(self):
        """``(base coding, codebook_bits, layer_codings)`` for :class:`train.TrainOptions`:
        learned layers follow the base coding with its codebook, the others are fixed."""
        bits = {parse_coding(c)[1] for c in self.codings} - {None}
        if len(bits) > 1:
            raise TernacError(f"one learned codebook size per network, got {sorted(bits)}")
        learned = bits.pop() if bits else None
        layer = tuple(None if parse_coding(c)[1] else str(parse_coding(c)[0]).strip("()")
                      for c in self.codings)
        return str(LEARNED_BASE).strip("()"), learned, layer

    def label(self):
        return f"{'/'.join(self.codings)} h{'-'.join(map(str, self.widths))} P{self.lanes}"

    def to_dict(self):
        return {"codings": list(self.codings), "widths": list(self.widths), "lanes": self.lanes}


@dataclass(frozen=True)
class Space:
    """Menus of the search: codings (per layer), hidden widths, lanes, hidden-layer count."""

    codings: tuple
    widths: tuple
    lanes: tuple
    hidden_layers: int

    def __post_init__(self):
        for entry in self.codings:
            parse_coding(entry)
        learned = {parse_coding(c)[1] for c in self.codings} - {None}
        if len(learned) > 1:
            raise TernacError(f"the coding menu may hold one learned codebook size, got {sorted(learned)}")
        if self.hidden_layers < 1:
            raise TernacError("--hidden-layers must be at least 1")
        for p in self.lanes:
            if not 1 <= p <= 256:
                raise TernacError(f"lanes must be in 1..256, got {p}")

    @classmethod
    def parse(cls, codings, widths, lanes, hidden_layers):
        entries = str(codings).replace(";", " ").split()       # "N,K" holds a comma
        if not entries:
            raise TernacError(f"empty coding menu {codings!r}: e.g. '8,1 8,2 16,3 8,8 learned6'")
        return cls(tuple(dict.fromkeys(entries)), tuple(parse_menu(widths, "width")),
                   tuple(parse_menu(lanes, "lanes")), int(hidden_layers))

    @property
    def weight_layers(self):
        return self.hidden_layers + 1

    def suggest(self, trial):
        """The point an Optuna trial asks for (categorical parameters, fixed dimension)."""
        codings = tuple(trial.suggest_categorical(f"coding{i}", list(self.codings))
                        for i in range(self.weight_layers))
        widths = tuple(trial.suggest_categorical(f"width{i}", list(self.widths))
                       for i in range(self.hidden_layers))
        return Point(codings, widths, trial.suggest_categorical("lanes", list(self.lanes)))

    @staticmethod
    def params(point):
        """The Optuna parameters of ``point`` (for ``study.enqueue_trial``)."""
        return {**{f"coding{i}": c for i, c in enumerate(point.codings)},
                **{f"width{i}": w for i, w in enumerate(point.widths)}, "lanes": point.lanes}
