"""Quantizers: float weights to (N, K) structured sparse ternary codes with scales.

The projection is written once, in torch, so that the golden model's quantizer and the
quantization-aware training use the same rule:

1. split each output row into sub-vectors of N (the last one zero-padded);
2. in every sub-vector keep at most K weights, the largest in magnitude, and only those above
   the row's threshold ``delta = t * mean|w|``;
3. the ternary weight is the sign of a kept weight; the row's scale is the least-squares
   optimum ``alpha = mean |w|`` over the kept weights;
4. ``t`` is chosen per row from a fixed grid to minimise ``||w - alpha * T||^2``.

A learned codebook instead assigns each sub-vector the table pattern that minimises the
same error (:func:`project_codebook`); :func:`learn_codebook` fits the table itself.
"""

import numpy as np
import torch

from .codebook import Codebook, TernacError

__all__ = [
    "THRESHOLD_GRID",
    "codebook_step",
    "encode_layer",
    "learn_codebook",
    "project",
    "project_codebook",
    "reconstruction_error",
]

# Thresholds tried per row, as a fraction of the row's mean |w|; 0 keeps the K largest always.
THRESHOLD_GRID = torch.linspace(0.0, 1.5, 16)


def _subvectors(w, n):
    """(O, I) -> (O, V, N), zero-padding the last sub-vector."""
    w = torch.as_tensor(w, dtype=torch.float32)
    pad = (-w.shape[1]) % n
    return torch.nn.functional.pad(w, (0, pad)).reshape(w.shape[0], -1, n)


def _topk_mask(sub, k):
    """Mask of the K largest-magnitude entries of every sub-vector."""
    if k == 0:
        return torch.zeros_like(sub, dtype=torch.bool)
    if k >= sub.shape[-1]:
        return torch.ones_like(sub, dtype=torch.bool)
    idx = sub.abs().topk(k, dim=-1).indices
    return torch.zeros_like(sub, dtype=torch.bool).scatter_(-1, idx, True)


@torch.no_grad()
def project(w, coding):
    """Project a float weight matrix onto (N, K) ternary.

    Parameters
    ----------
    w : tensor or array, shape (O, I)
    coding : Coding

    Returns
    -------
    ternary : float tensor (O, I) with values in {-1, 0, +1}, at most K non-zeros per sub-vector
    scale : float tensor (O,), positive (1.0 for a row left all-zero)
    """
    w = torch.as_tensor(w, dtype=torch.float32)
    sub = _subvectors(w, coding.n)                                   # (O, V, N)
    mag = sub.abs()
    top = _topk_mask(sub, coding.k)
    mean = w.abs().mean(dim=1).clamp_min(1e-12)                      # (O,)
    best_err = torch.full((w.shape[0],), float("inf"))
    best_mask = torch.zeros_like(top)
    energy = (w * w).sum(dim=1)
    for t in THRESHOLD_GRID:
        mask = top & (mag > (t * mean)[:, None, None])
        count = mask.sum(dim=(1, 2)).clamp_min(1)
        total = (mag * mask).sum(dim=(1, 2))
        err = energy - total * total / count                          # error at the optimal alpha
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_mask[better] = mask[better]
    ternary = torch.sign(sub) * best_mask
    count = best_mask.sum(dim=(1, 2))
    scale = torch.where(count > 0, (mag * best_mask).sum(dim=(1, 2)) / count.clamp_min(1),
                        torch.ones_like(mean))
    return ternary.reshape(w.shape[0], -1)[:, : w.shape[1]], scale


@torch.no_grad()
def project_codebook(w, codebook, scale=None, iterations=3):
    """Assign every sub-vector the codebook pattern minimising ``||w - alpha * p||^2``.

    Alternates between assignment at fixed per-row scales and the least-squares scale at fixed
    assignment. Returns ``(codes (O, V) int64, ternary (O, I), scale (O,))``.
    """
    w = torch.as_tensor(w, dtype=torch.float32)
    sub = _subvectors(w, codebook.coding.n)                           # (O, V, N)
    pats = torch.as_tensor(codebook.patterns, dtype=torch.float32)    # (E, N)
    norms = (pats * pats).sum(dim=1)                                  # (E,)
    if scale is None:
        scale = project(w, codebook.coding)[1]
    scale = torch.as_tensor(scale, dtype=torch.float32).clone()
    for _ in range(iterations):
        dots = sub @ pats.T                                           # (O, V, E)
        cost = -2 * scale[:, None, None] * dots + (scale * scale)[:, None, None] * norms
        codes = cost.argmin(dim=-1)
        chosen_dot = dots.gather(-1, codes[..., None]).squeeze(-1).sum(dim=1)
        chosen_norm = norms[codes].sum(dim=1)
        scale = torch.where(chosen_norm > 0, chosen_dot / chosen_norm.clamp_min(1), scale).clamp_min(1e-12)
    ternary = pats[codes].reshape(w.shape[0], -1)[:, : w.shape[1]]
    return codes, ternary, scale


@torch.no_grad()
def learn_codebook(w, coding, bits, iterations=10):
    """Fit a ``2**bits``-entry codebook of (N, K) patterns to one layer's weights.

    k-means over sub-vectors in units of their row's scale: start from the most frequent
    patterns of the plain (N, K) projection, then alternate assignment
    (:func:`project_codebook`) and, per entry, the ternary pattern with at most K non-zeros
    closest to its cluster's mean (keep the largest entries above 1/2). Entry 0 stays all-zero.
    """
    if not 1 <= bits <= coding.code_bits:
        raise TernacError(f"codebook bits must be in 1..{coding.code_bits} for coding {coding}, got {bits}")
    w = torch.as_tensor(w, dtype=torch.float32)
    ternary, scale = project(w, coding)
    sub_t = _subvectors(ternary, coding.n).reshape(-1, coding.n).to(torch.int8)
    uniq, counts = torch.unique(sub_t, dim=0, return_counts=True)
    order = counts.argsort(descending=True)
    table = [torch.zeros(coding.n, dtype=torch.int8)]
    for row in uniq[order]:
        if len(table) == 2**bits:
            break
        if row.any():
            table.append(row)
    default = Codebook.default(coding).patterns
    for row in default[1:]:                                           # fill up from the canonical order
        if len(table) == 2**bits:
            break
        if not any(torch.equal(torch.as_tensor(row), t) for t in table):
            table.append(torch.as_tensor(row))
    book = Codebook.learned_table(coding, torch.stack(table).numpy())
    for _ in range(iterations):
        book, _, scale = codebook_step(w, book, scale)
    return book


@torch.no_grad()
def codebook_step(w, book, scale=None):
    """One k-means step of a learned codebook on a weight matrix (O, I).

    Assign every sub-vector (:func:`project_codebook`, one iteration), then move every entry
    but 0 to the pattern with at most K non-zeros nearest its cluster mean in units of the row
    scale (keep the largest entries above 1/2); a pattern already in the table is not
    duplicated. Returns ``(new codebook, entries left without members, row scales)``.
    """
    coding = book.coding
    codes, _, scale = project_codebook(w, book, scale, iterations=1)
    units = (_subvectors(w, coding.n) / scale[:, None, None]).reshape(-1, coding.n)
    flat = codes.reshape(-1)
    patterns = book.patterns.copy()
    seen = {row.tobytes() for row in patterns}
    empty = []
    for entry in range(1, len(patterns)):
        members = units[flat == entry]
        if len(members) == 0:
            empty.append(entry)
            continue
        mean = members.mean(dim=0)
        keep = _topk_mask(mean[None], coding.k)[0] & (mean.abs() > 0.5)
        new = (torch.sign(mean) * keep).to(torch.int8).numpy()
        if new.any() and new.tobytes() not in seen:
            seen.discard(patterns[entry].tobytes())
            seen.add(new.tobytes())
            patterns[entry] = new
    return Codebook.learned_table(coding, patterns), empty, scale


def encode_layer(w, codebook):
    """Quantize one float weight matrix (O, I) with ``codebook``.

    Returns ``(codes (O, V) uint16, ternary int8 (O, I), scale float64 (O,))``.
    """
    if codebook.learned:
        codes, ternary, scale = project_codebook(w, codebook)
        codes = codes.numpy().astype(np.uint16)
    else:
        ternary, scale = project(w, codebook.coding)
        codes = codebook.encode(_subvectors(ternary, codebook.coding.n).to(torch.int8).numpy())
    return codes, ternary.numpy().astype(np.int8), scale.numpy().astype(np.float64)


def reconstruction_error(w, ternary, scale):
    """Relative reconstruction error ``||w - alpha*T||^2 / ||w||^2``."""
    w = np.asarray(w, dtype=np.float64)
    approx = np.asarray(scale, dtype=np.float64)[:, None] * np.asarray(ternary, dtype=np.float64)
    return float(((w - approx) ** 2).sum() / max((w * w).sum(), 1e-30))
