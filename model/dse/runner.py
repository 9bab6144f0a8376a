"""Where the training jobs run: local worker processes (default) or a Ray cluster.

Both take a list of jobs and yield ``(job, result)`` as they finish. Locally, at most
``workers`` spawned processes (each PyTorch at ``threads`` threads); on Ray every job is one
task (``num_cpus=threads``) whose result, the trained network included, comes back as bytes.
"""

import multiprocessing
import socket
from concurrent import futures

from ..codebook import TernacError
from .evaluate import train_job

__all__ = ["LocalRunner", "RayRunner", "make_runner"]


class LocalRunner:
    """A pool of ``workers`` spawned processes (spawn: no forked PyTorch thread state)."""

    name = "local"

    def __init__(self, workers):
        self.workers = workers
        self._pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def map(self, jobs):
        pending = {self._pool.submit(train_job, job): job for job in jobs}
        for done in futures.as_completed(pending):
            yield pending[done], done.result()

    def close(self):
        self._pool.shutdown()


class RayRunner:
    """Jobs as Ray tasks on the cluster at ``address`` (connected once, left running)."""

    name = "ray"

    def __init__(self, address, threads):
        try:
            import ray
        except ModuleNotFoundError:
            raise TernacError("--ray needs the ray package: pip install 'ternac[dse]'") from None
        self._ray = ray
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise TernacError(f"cannot connect to the Ray cluster at {address}: "
                                  f"{str(error).splitlines()[0]}") from None
        self._task = ray.remote(num_cpus=threads, max_retries=1)(train_job)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)

    def map(self, jobs):
        pending = {self._task.remote(job): job for job in jobs}
        while pending:
            done, _ = self._ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), self._ray.get(done[0])

    def close(self):
        pass


def _check_reachable(address, timeout=5.0):
    """Fail fast on a ``host:port`` nobody listens at (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return                                  # "auto" and the like: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise TernacError(f"cannot connect to the Ray cluster at {address}: {error.strerror or error}") from None


def make_runner(ray_address, workers, threads):
    return RayRunner(ray_address, threads) if ray_address else LocalRunner(workers)
