"""Train one design point: the unit of work a local worker or a Ray task runs.

Everything in and out is plain data (a job dict in; a result dict with the ``.tern`` file as
bytes out), so the same function runs in a local process or on a Ray node.
"""

import tempfile
from pathlib import Path

__all__ = ["network_from_bytes", "train_job"]


def network_from_bytes(data):
    """The :class:`Network` of a ``.tern`` file's bytes."""
    from ..network import load_network
    with tempfile.TemporaryDirectory(prefix="ternac-dse-") as tmp:
        path = Path(tmp) / "point.tern"
        path.write_bytes(data)
        return load_network(path)


def train_job(job):
    """Train ``job["point"]`` (a :meth:`Point.to_dict`) on ``job["dataset"]``.

    Returns ``{"key", "integer_accuracy", "float_accuracy", "train_seconds", "tern": bytes}``.
    ``job["float_cache"]``: a directory for the float models (shared by the points of one
    width), or None for a private temporary one.
    """
    # Imported here: a Ray worker or spawned process starts from this function alone.
    import torch

    from ..network import save_network
    from ..train import TrainOptions, train_network
    from .space import Point

    torch.set_num_threads(job["threads"])
    point = Point(tuple(job["point"]["codings"]), tuple(job["point"]["widths"]), job["point"]["lanes"])
    base, codebook_bits, layer_codings = point.train_codings()
    opts = TrainOptions(dataset=job["dataset"], arch=point.arch(job["inputs"], job["classes"]),
                        coding=base, codebook_bits=codebook_bits, layer_codings=layer_codings,
                        float_epochs=job["float_epochs"], qat_epochs=job["epochs"], seed=job["seed"],
                        threads=job["threads"], progress=False)
    with tempfile.TemporaryDirectory(prefix="ternac-dse-") as tmp:
        net, _, summary = train_network(opts, say=lambda text: None,
                                        float_cache=job.get("float_cache") or tmp)
        path = Path(tmp) / "point.tern"
        save_network(net, path)
        tern = path.read_bytes()
    return {"key": job["key"], "integer_accuracy": summary["integer_accuracy"],
            "float_accuracy": summary["float_accuracy"], "train_seconds": summary["train_seconds"],
            "tern": tern}
