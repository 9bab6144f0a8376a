"""``ternac pack MODEL --coding N,K [--lanes P] --out NET.tern [--data DATA]``.

With ``--data`` (the inputs the network will see) the activation scales are calibrated on
that data, and the packed integer network is evaluated on it against the float model; a
calibration whose value range does not fit the data gets a warning (stderr and JSON).
"""

import sys
from pathlib import Path

import numpy as np
import torch

from .bits import bits_per_weight
from .codebook import Coding, TernacError
from .convert import compare_with_float, input_range_warning, quantize_network
from .datasets import load_user_data
from .floatmodel import FloatModel
from .importer import import_model
from .layout import coded_matrix
from .network import save_network
from .quantize import reconstruction_error


def configure(parser):
    parser.add_argument("model", help="a torch.save-d nn.Module, a TorchScript file (traced or scripted) "
                        "or an ONNX file")
    parser.add_argument("--coding", required=True, help="N,K e.g. 8,2")
    parser.add_argument("--lanes", type=int, default=8, help="output neurons in parallel (P)")
    parser.add_argument("--out", required=True, help="the .tern file to write")
    parser.add_argument("--codebook-bits", type=int, help="learn a per-layer codebook of 2**B patterns")
    parser.add_argument("--input-shape", help="per-sample input shape C,H,W (needed when the first layer is a "
                        "Conv2d, unless the file records it as ONNX does)")
    parser.add_argument("--data", metavar="DATA", help="inputs the network will see (an .npz with 'x' or a "
                        "folder of images): calibrated on by default, and the packed network is checked on them")
    parser.add_argument("--calibrate",
                        help="calibration inputs: 'uniform' (random in [0,1)), a data set name (digits, "
                             "fashion-mnist, mnist5k), an .npy file of float inputs, or an .npz / image folder "
                             "as for --data (default: --data if given, else 'uniform')")
    parser.add_argument("--samples", type=int, default=512, help="calibration samples")
    parser.add_argument("--seed", type=int, default=0)


def parse_shape(text):
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise TernacError(f"--input-shape {text!r}: expected integers like 1,28,28") from None


def calibration_inputs(source, shape, samples, seed):
    """Float calibration inputs (samples, *shape)."""
    generator = torch.Generator().manual_seed(seed)
    if source == "uniform":
        return torch.rand((samples,) + shape, generator=generator)
    if source.endswith(".npy"):
        try:
            x = torch.as_tensor(np.load(source), dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise TernacError(f"cannot read calibration file {source}: {error}") from None
    elif source.endswith(".npz") or Path(source).is_dir():
        x = torch.as_tensor(_user_inputs(source, shape))
    else:
        from .datasets import load_dataset
        x = torch.as_tensor(load_dataset(source).x_train)
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise TernacError(f"calibration inputs have {int(np.prod(x.shape[1:]))} values per sample, "
                          f"the model takes {shape}")
    index = torch.randperm(len(x), generator=generator)[:samples]
    return x[index].reshape((-1,) + shape)


def _user_inputs(path, shape):
    data = load_user_data(path, shape)
    return np.concatenate([data.x_train, data.x_test])


def run(args, say):
    args.coding = Coding.parse(args.coding)
    ops = import_model(args.model, parse_shape(args.input_shape))
    shape = ops.input_shape
    source = args.calibrate or args.data or "uniform"
    calib = calibration_inputs(source, shape, args.samples, args.seed)
    net = quantize_network(None, args.coding, calib, input_shape=shape, lanes=args.lanes,
                           codebook_bits=args.codebook_bits, ops=ops)
    net.meta.update({"source": str(args.model), "calibration": source})
    save_network(net, args.out)
    bits = bits_per_weight(net)
    errors = {}
    for op, layer in zip(ops.weight_ops, net.ternary_layers):
        errors[layer.name] = reconstruction_error(coded_matrix(op.weight, args.coding.n).numpy(), layer.weights(), layer.scale)
    say(f"packed {args.model} at coding {args.coding}, {args.lanes} lanes -> {args.out}")
    for note in ops.notes:
        say(f"  note: {note}")
    warnings, check = [], None
    if args.data:
        x = _user_inputs(args.data, shape)
        with torch.no_grad():
            check = compare_with_float(net, x, FloatModel(ops)(torch.as_tensor(x)))
        say(f"  on {args.data}: argmax agrees with the float model on {100 * check['agreement']:.1f} % of "
            f"{len(x)} inputs; relative RMS output error "
            f"{', '.join('-' if e is None else f'{e:.3f}' for e in check['relative_rms_error'])}")
        warnings = [w for w in [input_range_warning(calib.numpy(), x, "--data")] if w]
    for warning in warnings:
        print(f"ternac pack: warning: {warning}", file=sys.stderr)
    for row in bits["per_layer"]:
        say(f"  {row['name']:>12}: {row['weights']:>8} weights, {row['codes']:.4f} code bits/weight, "
            f"{row['all_in']:.4f} all-in, reconstruction error {errors[row['name']]:.4f}")
    say(f"  network: {bits['codes']:.4f} code bits/weight, {bits['all_in']:.4f} all-in "
        f"(x{bits['fp32_ratio']:.1f} smaller than fp32)")
    return {"out": args.out, "coding": [args.coding.n, args.coding.k], "lanes": args.lanes,
            "input_shape": list(shape), "outputs": len(net.output_shapes), "notes": ops.notes,
            "calibration": source, "check": check, "warnings": warnings,
            "bits_per_weight": {"codes": bits["codes"], "all_in": bits["all_in"]},
            "layers": [{"name": r["name"], "codes": r["codes"], "all_in": r["all_in"],
                        "reconstruction_error": errors[r["name"]]} for r in bits["per_layer"]]}
