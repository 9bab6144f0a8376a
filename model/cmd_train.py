"""``ternac train``: train float, retrain ternary with the quantizer in the loop, write a .tern.

The reported ternary accuracy is that of the integer reference executor on int8 test inputs.
``--model M --data D`` retrains a user's model on the user's data (without labels: by
distillation from the model's own outputs; the accuracies are then agreements with it).
"""

import sys

from torch import nn
from torch.nn.modules.utils import _pair

from .codebook import TernacError
from .datasets import DATASETS, load_dataset
from .importer import load_torch_model
from .network import check_input_shape, save_network
from .qat import SCHEDULES
from .train import TrainOptions, load_initial_model, train_network


def configure(parser):
    parser.add_argument("--dataset", choices=list(DATASETS), help="a bundled data set")
    parser.add_argument("--data", metavar="DATA", help="your own inputs instead: an .npz with 'x' (and "
                        "optional labels 'y') or a folder of images (one sub-folder per class for labels); "
                        "without labels the model of --model is distilled from")
    parser.add_argument("--arch", help="architecture, e.g. mlp:784-256-256-10 or cnn:16-32 "
                        "(with --model: the architecture of a state_dict)")
    parser.add_argument("--model", metavar="PATH",
                        help="start from this float model instead of training one: a torch.save-d "
                             "nn.Module, a TorchScript file, or a state_dict (with --arch)")
    parser.add_argument("--coding", default="8,2", help="(N,K) coding, e.g. 8,2 (default), 16,3, "
                        "8,8 for dense ternary")
    parser.add_argument("--codebook-bits", type=int, metavar="B",
                        help="learn a per-layer codebook of 2**B patterns (e.g. 6 with --coding 8,2)")
    parser.add_argument("--edge-coding", metavar="N,K",
                        help="keep the first and last layers at a denser coding (higher precision), "
                             "e.g. 8,8 (dense ternary); the .tern then mixes codings, which the "
                             "accelerator runs with an array of the largest K")
    parser.add_argument("--schedule", choices=SCHEDULES, default="oneshot",
                        help="oneshot projection, gradual pruning, or stochastic partial quantization")
    parser.add_argument("--out", metavar="NET.tern", help="write the integer network here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float-epochs", type=float,
                        help="float training epochs (default per data set; 0 with --model)")
    parser.add_argument("--epochs", type=float, help="ternary retraining epochs (default per data set)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float, default=2e-3, help="float learning rate (Adam)")
    parser.add_argument("--qat-lr", type=float, default=1e-3, help="retraining learning rate (Adam)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--float-cache", metavar="DIR", help="reuse float models trained before")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args, say):
    if not args.arch and not args.model:
        raise TernacError("give --arch (e.g. mlp:784-256-256-10) or --model PATH")
    if bool(args.dataset) == bool(args.data):
        raise TernacError("give one of --dataset NAME or --data DATA")
    float_epochs = args.float_epochs
    if float_epochs is None and args.model:
        float_epochs = 0
    opts = TrainOptions(dataset=args.dataset or "custom", data=args.data, arch=args.arch or "", coding=args.coding,
                        codebook_bits=args.codebook_bits, schedule=args.schedule,
                        edge_coding=args.edge_coding,
                        float_epochs=float_epochs, qat_epochs=args.epochs, batch=args.batch,
                        lr=args.lr, qat_lr=args.qat_lr, seed=args.seed, threads=args.threads,
                        progress=not args.no_progress)
    if args.model and args.dataset:
        data = load_dataset(args.dataset)
        try:
            model = load_initial_model(args.model, args.arch, data)
        except TernacError:
            # The import fails on a shape mismatch: say which shape the model wants instead.
            model = _loaded_module(args.model)
            if model is None:
                raise
        check_input_shape(model_input_shape(model, data.input_shape), data.input_shape,
                          f"the data set {args.dataset}")
    net, _, summary = train_network(opts, say=say, init=args.model, float_cache=args.float_cache)
    for warning in summary["warnings"]:
        print(f"ternac train: warning: {warning}", file=sys.stderr)
    if args.out:
        save_network(net, args.out)
        say(f"wrote {args.out}")
        summary["out"] = args.out
    say(f"float {100 * summary['float_accuracy']:.2f} %, ternary integer "
        f"{100 * summary['integer_accuracy']:.2f} % at {summary['bits_per_weight_codes']:.3f} b/w "
        f"(all-in {summary['bits_per_weight_all_in']:.3f}); training {summary['train_seconds']:.0f} s")
    return summary


def _loaded_module(path):
    """The saved module itself (None if it cannot be loaded as one)."""
    try:
        return load_torch_model(path)
    except TernacError:
        return None


def model_input_shape(model, shape):
    """The per-sample input shape a float layer chain takes: ``(features,)`` before a leading
    Linear; ``(C, H, W)`` before a leading Conv2d, with H, W those of ``shape`` if the chain's
    first Linear accepts them, else the smallest square that it accepts (None if none does)."""
    layers = [m for m in model.modules() if not list(m.children())]
    first = next(m for m in layers if isinstance(m, (nn.Linear, nn.Conv2d)))
    if isinstance(first, nn.Linear):
        return (first.in_features,)

    def fits(h, w):                 # does the first Linear after the convolutions get its width?
        c = first.in_channels
        for m in layers:
            if isinstance(m, nn.Linear):
                return c * h * w == m.in_features
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                (kh, kw), (sh, sw) = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
                ph, pw = _pair(getattr(m, "padding", 0))
                h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
                c = getattr(m, "out_channels", c)
                if h < 1 or w < 1:
                    return False
        return True

    if len(shape) == 3 and fits(*shape[1:]):
        return (first.in_channels, *shape[1:])
    side = next((n for n in range(1, 1025) if fits(n, n)), None)
    return (first.in_channels, side, side)
