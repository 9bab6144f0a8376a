"""Training: float pre-training, ternary retraining (:mod:`qat`), export to the integer network.

:func:`train_network` is the whole flow behind ``ternac train``; the accuracy it reports for
the ternary network is always that of the integer reference executor
(:func:`reference.golden_predict`) on int8 test inputs, next to the float model's and the
quantized float shadow's. Everything runs on pre-loaded tensors with Adam and a cosine
learning rate, ``torch.set_num_threads(threads)``; progress bars go to stderr.

On a user's own data (``TrainOptions.data``, :func:`datasets.load_user_data`) with labels the
retraining is supervised as on a bundled data set; without labels it distils from the float
model: the loss is the mean squared error between the ternary shadow's outputs (every head)
and the float model's, and the reported "accuracies" are agreements with the float model's
predictions (argmax of the first head). Calibration uses the same data.
"""

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .arch import build_arch
from .bits import bits_per_weight
from .codebook import Codebook, Coding, TernacError
from .convert import (
    DEFAULT_PERCENTILE,
    compare_with_float,
    input_range_warning,
    quantize_inputs,
    quantize_network,
)
from .datasets import load_dataset, load_user_data
from .floatmodel import FloatModel
from .importer import import_model
from .qat import (
    SCHEDULES,
    Schedule,
    normalise_channels,
    qat_forward,
    seeded_generator,
    weight_layers,
)
from .reference import golden_predict

__all__ = [
    "TrainOptions",
    "float_accuracy",
    "float_bits",
    "integer_accuracy",
    "load_initial_model",
    "qat_accuracy",
    "retrain",
    "train_float",
    "train_network",
]


# Per-data-set defaults of the epoch counts and batch size (a step count that suits its size).
DEFAULTS = {
    "digits": {"float_epochs": 60, "qat_epochs": 30, "batch": 64},
    "mnist5k": {"float_epochs": 40, "qat_epochs": 20, "batch": 128},
    "fashion-mnist": {"float_epochs": 15, "qat_epochs": 8, "batch": 256},
}


@dataclass
class TrainOptions:
    dataset: str = "digits"
    data: str | None = None               # a user's .npz or image folder instead of ``dataset``
    arch: str = "mlp:64-64-10"
    coding: str = "8,2"
    codebook_bits: int | None = None
    schedule: str = "oneshot"
    edge_coding: str | None = None        # coding of the first and last weight layers
    # Per weight layer: its own "N,K" coding, or None for ``coding`` (with ``codebook_bits``).
    layer_codings: tuple | None = None
    float_epochs: float | None = None     # None: DEFAULTS of the data set
    qat_epochs: float | None = None
    batch: int | None = None
    lr: float = 2e-3
    qat_lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    calibration: int = 4096
    percentile: float = DEFAULT_PERCENTILE
    threads: int = 2
    progress: bool = True

    def __post_init__(self):
        for key, value in DEFAULTS.get(self.dataset, DEFAULTS["fashion-mnist"]).items():
            if getattr(self, key) is None:
                setattr(self, key, value)


def _tensors(data):
    return (torch.from_numpy(data.x_train), torch.from_numpy(data.y_train),
            torch.from_numpy(data.x_test), torch.from_numpy(data.y_test))


def _first(out):
    """The first head's output (the classifier by convention)."""
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def float_outputs(model, x, batch=2048):
    """Every output of a float model on ``x``, as a tuple (one tensor per head)."""
    model.eval()
    outs = [model(x[i: i + batch]) for i in range(0, len(x), batch)]
    outs = [o if isinstance(o, tuple) else (o,) for o in outs]
    return tuple(torch.cat(parts) for parts in zip(*outs))


@torch.no_grad()
def float_accuracy(model, x, y, forward=None, batch=2048):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        out = model(x[i: i + batch]) if forward is None else forward(x[i: i + batch])
        correct += int((_first(out).argmax(1) == y[i: i + batch]).sum())
    return correct / max(len(x), 1)


def _loss(out, target):
    """Cross-entropy of the first head on labels, or (distillation, ``target`` a tuple of the
    float model's outputs) the sum over heads of the mean squared error."""
    if isinstance(target, tuple):
        outs = out if isinstance(out, tuple) else (out,)
        return sum(nn.functional.mse_loss(o, t) for o, t in zip(outs, target))
    return nn.functional.cross_entropy(_first(out), target)


def qat_accuracy(model, quantizers, x, y):
    """Accuracy of the quantized float shadow (the QAT forward with every weight ternary)."""
    saved = [q.fraction for q in quantizers]
    for q in quantizers:
        q.fraction = 1.0
    try:
        return float_accuracy(model, x, y, forward=lambda xb: qat_forward(model, xb, quantizers))
    finally:
        for q, f in zip(quantizers, saved):
            q.fraction = f


def integer_accuracy(network, x, y):
    """Accuracy of the golden integer reference on int8-quantized inputs."""
    x_int = quantize_inputs(network, np.asarray(x))
    pred = golden_predict(network, x_int)
    return float((pred == np.asarray(y)).mean())


def _fit(model, x, y, epochs, lr, batch, seed, forward=None, on_step=None, desc="train",
         progress=True, weight_decay=0.0):
    """Adam with a cosine learning rate over ``epochs`` (may be fractional) of minibatches.

    ``y``: labels, or a tuple of target outputs (distillation). Returns the loss of every step.
    """
    per_epoch = math.ceil(len(x) / batch)
    steps = max(1, round(epochs * per_epoch))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen = seeded_generator(seed)
    losses = []
    order = torch.empty(0, dtype=torch.long)
    # disable=None: bars only on a terminal, never as carriage-return noise in a log
    bar = tqdm(total=steps, desc=desc, disable=None if progress else True, leave=False, unit="step",
               dynamic_ncols=True)
    model.train()
    for step in range(steps):
        if on_step is not None:
            on_step(step)
        pos = (step % per_epoch) * batch
        if pos == 0:
            order = torch.randperm(len(x), generator=gen)
        idx = order[pos: pos + batch]
        out = model(x[idx]) if forward is None else forward(x[idx])
        loss = _loss(out, tuple(t[idx] for t in y) if isinstance(y, tuple) else y[idx])
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return losses


def train_float(model, data, opts):
    """Float training in place; returns the wall time in seconds."""
    x, y, _, _ = _tensors(data)
    start = time.perf_counter()
    _fit(model, x, y, opts.float_epochs, opts.lr, opts.batch, opts.seed, desc="float",
         progress=opts.progress, weight_decay=opts.weight_decay)
    return time.perf_counter() - start


def retrain(model, data, opts, say=print, targets=None):
    """Ternary retraining in place with the schedule of ``opts``; returns (quantizers, seconds, losses).

    ``targets``: the float model's outputs on ``data.x_train`` to distil from (instead of labels).
    """
    coding = Coding.parse(opts.coding)
    if opts.schedule not in SCHEDULES:
        raise TernacError(f"unknown schedule {opts.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    x, y, _, _ = _tensors(data)
    calib = _calibration(x, opts)[:1024]
    per_epoch = math.ceil(len(x) / opts.batch)
    steps = max(1, round(opts.qat_epochs * per_epoch))
    schedule = Schedule(opts.schedule, coding, steps, codebook_bits=opts.codebook_bits, seed=opts.seed,
                        fixed=_fixed_layers(model, opts))
    start = time.perf_counter()
    if opts.schedule == "gradual":
        normalise_channels(model, calib)
    quantizers = schedule.make_quantizers(model)
    gen = seeded_generator(opts.seed + 1)

    def on_step(step):
        event = schedule.update(step, model, quantizers,
                                calib if opts.schedule == "gradual" else None)
        if event and step > 0:
            say(f"  step {step}/{steps}: {event}")

    def forward(xb):
        return qat_forward(model, xb, [lambda w, q=q: q(w, gen) for q in quantizers])

    losses = []
    if opts.qat_epochs > 0:
        losses = _fit(model, x, y if targets is None else targets, opts.qat_epochs, opts.qat_lr, opts.batch,
                      opts.seed + 2, forward=forward, on_step=on_step,
                      desc=f"retrain {opts.schedule} {coding}", progress=opts.progress)
    schedule.update(steps, model, quantizers)          # final state: target coding, fully ternary
    for q in quantizers:
        q.fraction = 1.0
    return quantizers, time.perf_counter() - start, losses


def _fixed_layers(model, opts):
    """``{layer index: Coding}`` of the layers with a coding of their own: the first and last
    under ``opts.edge_coding``, and every non-None entry of ``opts.layer_codings``."""
    count = len(weight_layers(model))
    fixed = {}
    if opts.edge_coding:
        edge = Coding.parse(opts.edge_coding)
        fixed = {0: edge, count - 1: edge}
    if opts.layer_codings is not None:
        if len(opts.layer_codings) != count:
            raise TernacError(f"{len(opts.layer_codings)} layer codings given for {count} weight layers")
        fixed.update({i: Coding.parse(c) for i, c in enumerate(opts.layer_codings) if c is not None})
    return fixed


def _calibration(x, opts):
    gen = seeded_generator(opts.seed + 3)
    idx = torch.randperm(len(x), generator=gen)[: opts.calibration]
    return x[idx]


def export(model, quantizers, data, opts, meta=None):
    """The integer :class:`Network` of the retrained model (same projection as in training)."""
    coding = Coding.parse(opts.coding)
    x = torch.from_numpy(data.x_train)
    books = None
    if opts.codebook_bits or opts.edge_coding or opts.layer_codings:
        books = [q.codebook if q.codebook is not None else Codebook.default(q.structure)
                 for q in quantizers]
    net = quantize_network(model, coding, _calibration(x, opts), codebooks=books,
                           percentile=opts.percentile)
    net.meta = dict(meta or {})
    return net


def float_bits(model):
    """Weights and size in bits of the float32 model (weights and biases)."""
    weights = sum(m.weight.numel() for m in weight_layers(model))
    params = sum(p.numel() for p in model.parameters())
    return weights, 32 * params


def load_initial_model(path, arch, data):
    """A float model from a saved module, a TorchScript or ONNX file, or a state_dict + arch."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TernacError(f"model file {path} does not exist") from None
    except Exception:  # noqa: BLE001 -- TorchScript archives and others go through the importer
        obj = None
    if isinstance(obj, dict):
        if not arch:
            raise TernacError(f"{path} holds a state_dict: give its architecture with --arch")
        model = build_arch(arch, data.input_shape, data.classes)
        state = obj.get("state_dict", obj)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise TernacError(f"state_dict {path} does not match architecture {arch}: "
                              f"{str(error).splitlines()[0]}") from None
        return model
    return FloatModel(import_model(path, data.input_shape))


def _float_cache_key(opts):
    fields = {k: getattr(opts, k) for k in ("dataset", "arch", "float_epochs", "batch", "lr",
                                             "weight_decay", "seed")}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def train_network(opts, say=print, init=None, float_cache=None):
    """Float training (or a given model), ternary retraining, export; returns (network, summary).

    ``init``: path of a float model to start from (module, TorchScript, ONNX, or state_dict
    with ``opts.arch``); it is trained further in float for ``opts.float_epochs`` (set 0 to
    skip, as ``ternac train --model`` does by default) before the ternary retraining.
    ``float_cache``: a directory where trained float models are kept and reused (keyed by data
    set, architecture, seed and float hyper-parameters). ``opts.data``: the user's data (see
    the module docstring). ``summary["warnings"]`` lists one-line warnings.
    """
    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    coding = Coding.parse(opts.coding)
    if opts.codebook_bits is not None and not 1 <= opts.codebook_bits <= coding.code_bits:
        raise TernacError(f"--codebook-bits must be in 1..{coding.code_bits} for coding {coding}")
    data = load_user_data(opts.data) if opts.data else load_dataset(opts.dataset)
    start = time.perf_counter()
    float_time = 0.0
    cached = targets = teacher_test = None
    if init is not None:
        model = load_initial_model(init, opts.arch, data)
        source = str(init)
        if not data.labelled:                   # distil: the float model's outputs are the targets
            if opts.float_epochs > 0:
                raise TernacError(f"{opts.data} has no labels ('y'): the float model cannot be trained "
                                  "further (use --float-epochs 0); it is distilled from instead")
            targets = float_outputs(model, torch.from_numpy(data.x_train))
            teacher_test = float_outputs(model, torch.from_numpy(data.x_test))
            data = replace(data, y_train=targets[0].argmax(1).numpy(), y_test=teacher_test[0].argmax(1).numpy())
        elif opts.float_epochs > 0:
            float_time = train_float(model, data, opts)
    elif not data.labelled:
        raise TernacError(f"{opts.data} has no labels ('y'): give the float model to distil from with --model")
    else:
        model = build_arch(opts.arch, data.input_shape, data.classes, seed=opts.seed)
        source = opts.arch
        if float_cache is not None:
            cached = Path(float_cache) / f"float-{_float_cache_key(opts)}.pt"
        if cached is not None and cached.exists():
            saved = torch.load(cached, map_location="cpu")
            model.load_state_dict(saved["state_dict"])
            float_time = saved["seconds"]
            say(f"float model from cache {cached} (trained in {float_time:.0f} s)")
        else:
            float_time = train_float(model, data, opts)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                # Written aside, then renamed: a parallel run never reads a half-written file.
                partial = cached.with_suffix(f".{os.getpid()}.part")
                torch.save({"state_dict": model.state_dict(), "seconds": float_time}, partial)
                os.replace(partial, cached)
    _, _, x_test, y_test = _tensors(data)
    float_acc = float_accuracy(model, x_test, y_test)
    say(f"float model: test accuracy {100 * float_acc:.2f} % ({float_time:.0f} s)")
    quantizers, qat_time, losses = retrain(model, data, opts, say, targets)
    shadow_acc = qat_accuracy(model, quantizers, x_test, y_test)
    dataset = opts.data or opts.dataset
    meta = {"dataset": dataset, "arch": opts.arch, "source": source, "schedule": opts.schedule,
            "coding": str(coding), "codebook_bits": opts.codebook_bits, "seed": opts.seed,
            "edge_coding": opts.edge_coding, "layer_codings": opts.layer_codings,
            "input": f"as in {opts.data}" if opts.data else "pixels in [0, 1]"}
    net = export(model, quantizers, data, opts, meta)
    int_acc = integer_accuracy(net, data.x_test, data.y_test)
    warning = input_range_warning(_calibration(torch.from_numpy(data.x_train), opts), data.x_test)
    total = time.perf_counter() - start
    bits = bits_per_weight(net)
    weights, fbits = float_bits(model)
    window = max(1, len(losses) // 10)
    summary = {
        "dataset": dataset, "labels": "given" if targets is None else "float model (distillation)",
        "arch": opts.arch, "source": source, "coding": str(coding),
        "codebook_bits": opts.codebook_bits, "schedule": opts.schedule, "seed": opts.seed,
        "edge_coding": opts.edge_coding,
        "float_accuracy": float_acc, "shadow_accuracy": shadow_acc, "integer_accuracy": int_acc,
        "bits_per_weight_codes": bits["codes"], "bits_per_weight_all_in": bits["all_in"],
        "total_bits": bits["total_bits"], "float_bits": fbits, "weights": weights,
        "float_seconds": float_time, "retrain_seconds": qat_time,
        "train_seconds": float_time + qat_time, "wall_seconds": total,
        "retrain_loss_first": float(np.mean(losses[:window])) if losses else None,
        "retrain_loss_last": float(np.mean(losses[-window:])) if losses else None,
        "float_comparison": None if teacher_test is None else compare_with_float(net, data.x_test, teacher_test),
        "warnings": [warning] if warning else [], "options": asdict(opts),
    }
    net.meta.update({k: summary[k] for k in ("float_accuracy", "shadow_accuracy", "integer_accuracy")})
    say(f"ternary {coding}{f' codebook {opts.codebook_bits} bits' if opts.codebook_bits else ''} "
        f"{opts.schedule}: shadow {100 * shadow_acc:.2f} %, integer {100 * int_acc:.2f} %, "
        f"{bits['codes']:.3f} b/w codes, {bits['all_in']:.3f} b/w all-in "
        f"(retrain {qat_time:.0f} s)")
    return net, model, summary
