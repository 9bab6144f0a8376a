"""``ternac pack MODEL --coding N,K [--lanes P] --out NET.tern``."""

import numpy as np
import torch

from .bits import bits_per_weight
from .codebook import Coding, TernacError
from .convert import quantize_network
from .importer import import_model
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
    parser.add_argument("--calibrate", default="uniform",
                        help="calibration inputs: 'uniform' (random in [0,1)), a data set name "
                             "(digits, fashion-mnist, mnist5k) or an .npy file of float inputs")
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
    else:
        from .datasets import load_dataset
        x = torch.as_tensor(load_dataset(source).x_train)
    if int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise TernacError(f"calibration inputs have {int(np.prod(x.shape[1:]))} values per sample, "
                          f"the model takes {shape}")
    index = torch.randperm(len(x), generator=generator)[:samples]
    return x[index].reshape((-1,) + shape)


def run(args, say):
    args.coding = Coding.parse(args.coding)
    ops = import_model(args.model, parse_shape(args.input_shape))
    shape = ops.input_shape
    calib = calibration_inputs(args.calibrate, shape, args.samples, args.seed)
    net = quantize_network(None, args.coding, calib, input_shape=shape, lanes=args.lanes,
                           codebook_bits=args.codebook_bits, ops=ops)
    net.meta.update({"source": str(args.model), "calibration": args.calibrate})
    save_network(net, args.out)
    bits = bits_per_weight(net)
    errors = {}
    for op, layer in zip(ops.weight_ops, net.ternary_layers):
        errors[layer.name] = reconstruction_error(op.weight.flatten(1).numpy(), layer.weights(), layer.scale)
    say(f"packed {args.model} at coding {args.coding}, {args.lanes} lanes -> {args.out}")
    for note in ops.notes:
        say(f"  note: {note}")
    for row in bits["per_layer"]:
        say(f"  {row['name']:>12}: {row['weights']:>8} weights, {row['codes']:.4f} code bits/weight, "
            f"{row['all_in']:.4f} all-in, reconstruction error {errors[row['name']]:.4f}")
    say(f"  network: {bits['codes']:.4f} code bits/weight, {bits['all_in']:.4f} all-in "
        f"(x{bits['fp32_ratio']:.1f} smaller than fp32)")
    return {"out": args.out, "coding": [args.coding.n, args.coding.k], "lanes": args.lanes,
            "input_shape": list(shape), "outputs": len(net.output_shapes), "notes": ops.notes,
            "bits_per_weight": {"codes": bits["codes"], "all_in": bits["all_in"]},
            "layers": [{"name": r["name"], "codes": r["codes"], "all_in": r["all_in"],
                        "reconstruction_error": errors[r["name"]]} for r in bits["per_layer"]]}
