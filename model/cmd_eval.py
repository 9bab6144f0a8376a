"""``ternac eval``: accuracy of the integer reference executor on a data set's test split."""

import time

from .datasets import DATASETS, load_dataset
from .network import check_input_shape, load_network
from .train import integer_accuracy


def configure(parser):
    parser.add_argument("network", metavar="NET.tern")
    parser.add_argument("--dataset", required=True, choices=list(DATASETS))
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--limit", type=int, help="only the first LIMIT images")


def run(args, say):
    net = load_network(args.network)
    data = load_dataset(args.dataset)
    check_input_shape(net.input_shape, data.input_shape, f"the data set {args.dataset}")
    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    start = time.perf_counter()
    acc = integer_accuracy(net, x, y)
    seconds = time.perf_counter() - start
    trained_on = net.meta.get("dataset")
    say(f"{args.network}: integer reference accuracy {100 * acc:.2f} % on {len(y)} {args.dataset} "
        f"{args.split} images ({seconds:.1f} s)")
    if trained_on and trained_on != args.dataset:
        say(f"note: the network was trained on {trained_on}")
    return {"network": args.network, "dataset": args.dataset, "split": args.split,
            "images": len(y), "integer_accuracy": acc, "seconds": seconds,
            "trained_on": trained_on, "recorded_integer_accuracy": net.meta.get("integer_accuracy")}
