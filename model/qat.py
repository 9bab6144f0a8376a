"""Quantization-aware (re)training: the (N, K) projection in the loop, with float shadow weights.

The float model stays a plain module -- an ``nn.Sequential`` (Linear, Conv2d, ReLU, MaxPool2d,
Flatten) or an imported network's :class:`floatmodel.FloatModel` (trunk and heads) -- so it is
exported as is by :func:`convert.quantize_network`. Training runs it through
:func:`qat_forward`, which replaces every weight by its quantized image:

* forward: ``alpha * T`` from :func:`quantize.project` (or :func:`quantize.project_codebook`
  for a learned codebook) -- the very functions the exporter calls, so the ternary weights
  and the refitted per-row scales seen in training are bit for bit those of the ``.tern``;
* backward: straight-through estimator, the gradient of ``alpha * T`` is passed unchanged
  to the float shadow weight.

Schedules (:class:`Schedule`), all over the same number of retraining steps:

* ``oneshot`` -- project onto the target (N, K) at once, then retrain;
* ``gradual`` -- gradual pruning: the largest number of non-zeros per sub-vector falls step by
  step (N -> N/2 -> ... -> K; K = N is dense ternary), with weight-distribution normalisation
  (:func:`normalise_channels`) before every step;
* ``stochastic`` -- stochastic partial quantization: at each step a random fraction ``p`` of each
  layer's sub-vectors is quantized (the rest stays float); ``p`` grows linearly from ``1/S``
  to 1 over the first 3/4 of the steps, the last quarter is fully ternary.

A learned codebook (``codebook_bits``) is learned jointly with the assignment: the forward
assigns every sub-vector its best table pattern, the weights learn through that assignment,
and the table is refitted (k-means over the current shadow weights, warm-started from the
current table, :func:`refine_codebook`) several times per run.
"""

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .codebook import Codebook
from .layout import coded_matrix, uncoded_weight
from .quantize import _subvectors, codebook_step, learn_codebook, project, project_codebook

__all__ = [
    "SCHEDULES",
    "LayerQuantizer",
    "Schedule",
    "Structure",
    "gradual_stages",
    "normalise_channels",
    "qat_forward",
    "refine_codebook",
    "weight_layers",
]

SCHEDULES = ("oneshot", "gradual", "stochastic")


@dataclass(frozen=True)
class Structure:
    """An intermediate (N, k) sparsity level of gradual pruning.

    Duck-types :class:`codebook.Coding` for :func:`quantize.project` (which reads only ``n``
    and ``k``) without Coding's code-width limit: (16, 16) dense ternary has 3**16 patterns,
    too many for one code, but is a valid training stage.
    """

    n: int
    k: int


def gradual_stages(coding):
    """Non-zeros per sub-vector of the gradual-pruning steps: N, N/2, ... down to K."""
    stages, k = [], coding.n
    while k > coding.k:
        stages.append(k)
        k //= 2
    return stages + [coding.k]


def weight_layers(model):
    """The Linear and Conv2d modules of a model, in order (trunk, then heads)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class LayerQuantizer:
    """Quantized image of one layer's weight, with a straight-through gradient.

    ``structure`` is the current (N, k) level, ``codebook`` a learned table (or None),
    ``fraction`` the share of sub-vectors quantized this step (1.0 = fully ternary).
    """

    def __init__(self, structure, codebook=None):
        self.structure = structure
        self.codebook = codebook
        self.fraction = 1.0

    def quantized(self, weight):
        """``alpha * T`` of the weight (no gradient), shape of ``weight``."""
        n = self.structure.n
        matrix = coded_matrix(weight.detach(), n)
        if self.codebook is not None:
            _, ternary, scale = project_codebook(matrix, self.codebook)
        else:
            ternary, scale = project(matrix, self.structure)
        return uncoded_weight(ternary * scale[:, None], weight.shape, n)

    def __call__(self, weight, generator=None):
        q = self.quantized(weight)
        ste = weight + (q - weight).detach()
        if self.fraction >= 1.0:
            return ste
        n = self.structure.n
        rows, columns = coded_matrix(weight.detach(), n).shape
        subs = -(-columns // n)
        draw = torch.rand(rows, subs, 1, generator=generator) < self.fraction
        mask = draw.expand(rows, subs, n).reshape(rows, -1)[:, :columns]
        return torch.where(uncoded_weight(mask, weight.shape, n), ste, weight)


def qat_forward(model, x, quantizers):
    """Run a model with its Linear/Conv2d weights replaced by ``quantizers[i](weight)``."""
    names = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    weights = {f"{name}.weight": q(m.weight) for name, m, q in zip(names, weight_layers(model), quantizers)}
    return torch.func.functional_call(model, weights, (x,))


def _homogeneous(module):
    """Modules that commute with a positive per-channel scale (ReLU(c*x) = c*ReLU(x))."""
    return isinstance(module, (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity))


@torch.no_grad()
def normalise_channels(model, x, quantizers=None, quantile=0.999, limit=32.0, eps=1e-8):
    """Weight-distribution normalisation (function-preserving).

    For every Linear/Conv2d layer followed (through ReLU / pooling / Flatten only) by another
    one, each output channel ``o`` is rescaled so that the ``quantile`` of its activation on
    ``x`` (a robust range) is the same for all channels of the layer (their geometric mean):
    row ``o`` and bias ``o`` are multiplied by ``c_o`` (clipped to ``[1/limit, limit]``) and
    the next layer's input columns of channel ``o`` by ``1 / c_o``. The float function is unchanged (ReLU and pooling are
    positively homogeneous) and so is this layer's own projection (it is per row and
    scale-equivariant), but the next layer's weights become comparable across its inputs:
    a weight's magnitude then measures its contribution, which is what the top-K choice of
    every (N, K) sub-vector should select on. It also equalises the channels' activation
    ranges for the per-tensor int8 activation scale of the integer network.

    With ``quantizers`` the activations are those of the quantized forward. A model with
    heads is normalised within its trunk.
    """
    modules = list(model if isinstance(model, nn.Sequential) else model.trunk)
    layers = [i for i, m in enumerate(modules) if isinstance(m, (nn.Linear, nn.Conv2d))]
    for a, b in itertools.pairwise(layers):
        if not all(_homogeneous(m) for m in modules[a + 1: b]):
            continue
        prefix = nn.Sequential(*modules[: a + 1])
        if quantizers is None:
            act = prefix(x)
        else:
            act = qat_forward(prefix, x, quantizers)
        act = torch.relu(act)
        per_channel = act.transpose(0, 1).reshape(act.shape[1], -1)
        rank = max(1, round(quantile * per_channel.shape[1]))
        spread = per_channel.kthvalue(rank, dim=1).values            # robust range per channel
        alive = spread > eps
        if not alive.any():
            continue
        mean_log = spread[alive].log().mean()
        c = torch.where(alive, (mean_log.exp() / spread.clamp_min(eps)).clamp(1 / limit, limit),
                        torch.ones_like(spread))
        first, second = modules[a], modules[b]
        shape = (-1,) + (1,) * (first.weight.dim() - 1)
        first.weight.mul_(c.reshape(shape))
        if first.bias is not None:
            first.bias.mul_(c)
        w = second.weight
        if isinstance(second, nn.Linear) and isinstance(first, nn.Conv2d):
            per_channel = w.shape[1] // len(c)          # flattened (C, H, W): C-major
            w.div_(c.repeat_interleave(per_channel)[None, :])
        elif isinstance(second, nn.Linear):
            w.div_(c[None, :])
        else:
            w.div_(c.reshape(1, -1, 1, 1))


@torch.no_grad()
def refine_codebook(weight, book, iterations=4):
    """k-means refit of a learned table to ``weight`` (O, I), warm-started from ``book``.

    The same update rule as :func:`quantize.learn_codebook` (assign with
    :func:`quantize.project_codebook`; each entry becomes the pattern with at most K
    non-zeros nearest its cluster mean in units of the row scale; entry 0 stays zero; a
    pattern already in the table is not duplicated), started from the current table instead
    of the frequency initialisation, so the table moves with the weights during training.
    An entry left without members is re-seeded with the most frequent (N, K) projection
    pattern missing from the table.
    """
    coding = book.coding
    w = torch.as_tensor(weight, dtype=torch.float32)
    for _ in range(iterations):
        book, empty, _ = codebook_step(w, book)
        patterns = book.patterns.copy()
        seen = {row.tobytes() for row in patterns}
        if empty:
            ternary, _ = project(w, coding)
            subs = _subvectors(ternary, coding.n).reshape(-1, coding.n).to(torch.int8)
            uniq, counts = torch.unique(subs, dim=0, return_counts=True)
            candidates = [row.numpy() for row in uniq[counts.argsort(descending=True)]
                          if row.any() and row.numpy().tobytes() not in seen]
            for entry, row in zip(empty, candidates):
                seen.discard(patterns[entry].tobytes())
                seen.add(row.tobytes())
                patterns[entry] = row
        book = Codebook.learned_table(coding, patterns)
    return book


@dataclass
class Schedule:
    """What the quantizers do at every retraining step (see the module docstring)."""

    kind: str
    coding: object
    steps: int
    codebook_bits: int | None = None
    refits: int = 6                     # learned-codebook refits over the run
    seed: int = 0
    fixed: dict | None = None           # layer index -> Coding kept from the start (edge layers)

    def __post_init__(self):
        self.stages = gradual_stages(self.coding) if self.kind == "gradual" else [self.coding.k]
        # gradual: the intermediate levels share the first half of the steps, the target the rest
        inter = len(self.stages) - 1
        half = self.steps // 2 if inter else 0
        self.stage_starts = [i * half // max(inter, 1) for i in range(inter)] + [half]
        self.stochastic_end = int(0.75 * self.steps)
        self.fixed = dict(self.fixed or {})
        self.current = 0
        refit_span = self.steps - self.stage_starts[-1]
        self.refit_steps = {self.stage_starts[-1] + i * refit_span // (self.refits + 1)
                            for i in range(1, self.refits + 1)} if self.codebook_bits else set()

    def stage_at(self, step):
        """Index of the sparsity stage in force at ``step``."""
        return max(i for i, start in enumerate(self.stage_starts) if start <= step)

    def fraction_at(self, step):
        if self.kind != "stochastic" or step >= self.stochastic_end:
            return 1.0
        first = 1.0 / max(self.stochastic_end, 1)
        return first + (1.0 - first) * step / max(self.stochastic_end, 1)

    def make_quantizers(self, model):
        """Quantizers for the first step (learned codebooks fitted to the float weights)."""
        quantizers = []
        self.current = 0
        for i, m in enumerate(weight_layers(model)):
            if i in self.fixed:
                quantizers.append(LayerQuantizer(self.fixed[i]))
                continue
            k = self.stages[0]
            structure = self.coding if k == self.coding.k else Structure(self.coding.n, k)
            book = None
            if self.codebook_bits and len(self.stages) == 1:
                book = learn_codebook(coded_matrix(m.weight.detach(), self.coding.n), self.coding, self.codebook_bits)
            quantizers.append(LayerQuantizer(structure, book))
        return quantizers

    def update(self, step, model, quantizers, normalise_data=None):
        """Set the quantizers for ``step``; returns a text event when a stage changes, else None."""
        event = None
        stage = self.stage_at(step)
        k = self.stages[stage]
        layers = weight_layers(model)
        free = [(q, m) for i, (q, m) in enumerate(zip(quantizers, layers)) if i not in self.fixed]
        if stage != self.current:
            self.current = stage
            if normalise_data is not None:
                normalise_channels(model, normalise_data, quantizers)
            for q, m in free:
                q.structure = self.coding if k == self.coding.k else Structure(self.coding.n, k)
                if self.codebook_bits and stage == len(self.stages) - 1:
                    q.codebook = learn_codebook(coded_matrix(m.weight.detach(), self.coding.n), self.coding, self.codebook_bits)
            event = f"sparsity step: at most {k} non-zeros per {self.coding.n} weights"
        if step in self.refit_steps:
            for q, m in free:
                q.codebook = refine_codebook(coded_matrix(m.weight.detach(), self.coding.n), q.codebook)
        fraction = self.fraction_at(step)
        for q in quantizers:
            q.fraction = fraction
        return event


def fraction_nonzero_ok(model, coding):
    """True when every sub-vector of the quantized weights has at most K non-zeros."""
    for m in weight_layers(model):
        ternary, _ = project(coded_matrix(m.weight.detach(), coding.n), coding)
        counts = _subvectors(ternary, coding.n).ne(0).sum(-1)
        if int(counts.max()) > coding.k:
            return False
    return True


def sparsity(model, coding):
    """Share of zero weights after the (N, K) projection."""
    zeros = total = 0
    for m in weight_layers(model):
        ternary, _ = project(coded_matrix(m.weight.detach(), coding.n), coding)
        zeros += int((ternary == 0).sum())
        total += ternary.numel()
    return zeros / max(total, 1)


def seeded_generator(seed):
    g = torch.Generator()
    g.manual_seed(int(np.uint32(seed)))
    return g
