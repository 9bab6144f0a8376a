"""The search: Optuna's NSGA-II sampler in ask/tell form, with the predictor as a screen.

Every round asks the sampler for candidates. The first ``warmup`` trainings are taken as
asked (the uniform baseline is enqueued first); after that a round asks ``screen`` times as
many candidates as it will train, the predictor (refitted on every trained configuration)
gives each a predicted accuracy, and the candidates whose predicted objectives (error, code
bits, cycles, LUTs: all but accuracy exact from the geometry) are dominated by the fewest
known or candidate points are trained; the rest are told to Optuna as pruned, so NSGA-II
breeds only from measured trials. Points that differ only in P share one training.
"""

import time
from dataclasses import dataclass

import optuna

from .evaluate import network_from_bytes
from .objectives import MINIMISED, geometry_objectives, objectives
from .predictor import Predictor, rank_correlation
from .space import Point, Space

__all__ = ["SearchSettings", "run_search"]

SCREENED = ("error", "code_bits", "cycles", "luts")


@dataclass
class SearchSettings:
    dataset: str
    inputs: int
    classes: int
    trainings: int = 12          # networks trained (the costly part)
    warmup: int = 4              # trainings before the predictor screens
    screen: int = 4              # candidates asked per training after the warm-up
    population: int = 8          # NSGA-II population
    float_epochs: float = 20
    epochs: float = 10
    threads: int = 1
    seed: int = 0
    float_cache: str | None = None


def _dominations(rows, keys):
    """For every row: how many rows dominate it (all keys <=, one <)."""
    def dominates(a, b):
        return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)
    return [sum(dominates(other, row) for other in rows if other is not row) for row in rows]


def run_search(space: Space, settings: SearchSettings, runner, baseline: Point, say):
    """Returns ``(study, records, screening)``: one record per evaluated trial (point,
    objectives, predicted accuracy when screened) and the screening statistics."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=settings.population, seed=settings.seed)
    study = optuna.create_study(directions=["minimize"] * len(MINIMISED), sampler=sampler)
    study.enqueue_trial(Space.params(baseline))
    trained, records, pruned = {}, [], 0
    held_out = []                   # (predicted, measured) of configurations not yet trained
    start, asks, max_asks = time.perf_counter(), 0, 50 * settings.trainings * settings.screen
    while len(trained) < settings.trainings and asks < max_asks:
        want = min(runner.workers, settings.trainings - len(trained))
        screening = len(trained) >= settings.warmup
        asked = [study.ask() for _ in range(want * settings.screen if screening else want)]
        asks += len(asked)
        candidates = [(trial, space.suggest(trial)) for trial in asked]
        predicted = {}
        if screening:
            done = list(trained)
            model = Predictor(settings.inputs, settings.classes).fit(
                [Point(c, w, 8) for c, w in done], [trained[k]["integer_accuracy"] for k in done])
            guesses = model.predict([p for _, p in candidates])
            rows = [dict(geometry_objectives(p, settings.inputs, settings.classes), error=1 - g)
                    for (_, p), g in zip(candidates, guesses)]
            known = [r["objectives"] for r in records]
            counts = _dominations(rows + known, SCREENED)[: len(rows)]
            order = sorted(range(len(rows)), key=lambda i: (counts[i], rows[i]["error"]))
            keep, keys = [], set()
            for i in order:                 # one candidate per new training, cached ones free
                point = candidates[i][1]
                if point.train_key in trained or (point.train_key not in keys and len(keys) < want):
                    keep.append(i)
                    keys.add(point.train_key)
            for i, (trial, point) in enumerate(candidates):
                if i in keep:
                    predicted[trial.number] = float(guesses[i])
                else:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    pruned += 1
            candidates = [candidates[i] for i in sorted(keep)]
        jobs = {}
        for _, point in candidates:
            if point.train_key not in trained and point.train_key not in jobs:
                jobs[point.train_key] = _job(point, settings)
        for job, result in runner.map(list(jobs.values())):
            key = (tuple(job["point"]["codings"]), tuple(job["point"]["widths"]))
            trained[key] = result
            say(f"[{len(trained)}/{settings.trainings}] trained {'/'.join(key[0])} "
                f"h{'-'.join(map(str, key[1]))}: integer {100 * result['integer_accuracy']:.2f} % "
                f"({result['train_seconds']:.0f} s, {time.perf_counter() - start:.0f} s so far)")
        for trial, point in candidates:
            result = trained[point.train_key]
            network = network_from_bytes(result["tern"])
            network.lanes = point.lanes
            values = objectives(network, point.lanes, result["integer_accuracy"])
            study.tell(trial, [values[k] for k in MINIMISED])
            guess = predicted.get(trial.number)
            if guess is not None and point.train_key in jobs:
                held_out.append((guess, result["integer_accuracy"]))
            records.append({"trial": trial.number, "point": point, "objectives": values,
                            "predicted_accuracy": guess, "train_seconds": result["train_seconds"]})
    screening = {
        "trainings": len(trained), "evaluated": len(records), "screened_out": pruned, "asked": asks,
        "held_out_pairs": len(held_out),
        "held_out_spearman": rank_correlation(*zip(*held_out)) if held_out else None,
    }
    return study, records, trained, screening


def _job(point, settings):
    return {"key": list(point.train_key), "point": point.to_dict(), "dataset": settings.dataset,
            "inputs": settings.inputs, "classes": settings.classes,
            "float_epochs": settings.float_epochs, "epochs": settings.epochs, "seed": settings.seed,
            "threads": settings.threads, "float_cache": settings.float_cache}
