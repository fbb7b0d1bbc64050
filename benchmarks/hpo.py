"""Time to the best model: a first-iteration HPO job with pruning against the same trials run to the end.

Both jobs run in one process on one device, on the quality benchmark's simulated clickstream
(``_common.simulate_clickstream``), with the default text method's search space and the project's
HPO code (``finetuning.hpo``: ``TrialRunner`` + ``search_parameters``, Optuna TPE with the same
sampler seed) and a real MLflow tracker (sqlite in a temp dir). Each job prepares the data once
(ItemSetManager) and saves the initial model once; every trial shares both.

* pruned: the median pruner (the product's default ``HyperparameterSearchSettings``), or ``--pruner
  successive_halving`` (asynchronous successive halving, ``SuccessiveHalvingPruner``), with the product's
  ``warmup_validations`` and ``reduction_factor`` unless given;
* unpruned: the same settings with ``pruner="none"``, every trial to its end.

Prints, per job, the wall time (preparation and the chosen run's refit on every session included, as the pipeline
runs it: ``TrialRunner.refit_chosen_run``), the time until the trial that produced its best validation NDCG@10
ended, that NDCG@10, the trials pruned, the validations logged and the refit's seconds; then the time
ratio pruned/unpruned (target <= 0.5x) and the NDCG@10 difference (target within 0.005). The pruned job
runs first, so any one-time warm-up cost falls on it.

``--extra-trials N`` also measures the time to the best model with the trial count not held equal, as the
anytime comparisons of Hyperband and ASHA do: after both jobs the pruned study goes on (the same study, sampler and
pruner) for up to N more trials, until its best is within ``--margin`` of the unpruned job's best, and the time its
trials took to get there, plus the chosen run's refit, is set against the unpruned job's time to its own best
with its refit: both are hindsight figures (neither search knows it holds its best until its trials end).
``--sampler-seed`` varies TPE's seed on the same clickstream: how far two searches of one setting land apart.

    .venv/bin/python benchmarks/hpo.py --device cuda                                # the issue's figure (GPU)
    .venv/bin/python benchmarks/hpo.py --device cpu --model /tmp/tiny-model --max-corpus 300 \\
        --sessions-per-query 4 --trials 3 --epochs 2                             # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import _common
import _pruning_replay
import optuna
import torch

from embedding_studio.finetuning.plugins.default_text import RECIPE_BATCH_SIZE, RECIPE_EPOCHS


@dataclass
class JobResult:
    name: str
    seconds: float
    seconds_to_best: float
    best_ndcg: float
    trials: int
    pruned: int
    validations: int
    refit_seconds: float
    run_ids: list[str]
    #: the search's best validation NDCG@10 as each trial ended, seconds from the job's start (its trials only)
    best_after_trial: list[tuple[float, float]]
    search: JobSearch


@dataclass(frozen=True)
class JobSearch:
    """What continue_search needs to go on with a job's study."""

    runner: Any
    storage: optuna.storages.BaseStorage
    settings: Any
    study_name: str


@dataclass
class Continuation:
    trials: int  # trials run after the job's own
    seconds: float  # the job's trials, then these, to the first trial within the margin, and one refit
    best_ndcg: float
    reached: bool


def run_job(
    name: str,
    pruner: str,
    clickstream: _common.SimulatedClickstream,
    args: argparse.Namespace,
    device: torch.device,
    tracker: Any,
    work_dir: Path,
) -> JobResult:
    from embedding_studio.finetuning.hpo import HyperparameterSearchSettings, TrialRunner, search_parameters
    from embedding_studio.finetuning.plugins.default_text import create_plugin
    from embedding_studio.models import load_embedding_model, release_memory

    method = create_plugin(
        name=f"benchmark_{name}",
        base_model=args.model,
        max_evals=args.trials,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        test_each_n_inputs=args.test_each_n_inputs,
    )
    # search_parameters reports "trial <finished outcomes>/<max_evals> <state>" after each Optuna trial (a trial
    # that repeats a finished parameter set trains nothing and adds no outcome): the first report of a count
    # is when that outcome's trial ended.
    outcome_ends: dict[int, float] = {}

    def on_progress(fraction: float, message: str) -> None:
        done = int(message.split()[1].split("/")[0])
        outcome_ends.setdefault(done, time.perf_counter())

    started = time.perf_counter()
    data = _common.prepare_data(clickstream.dataset, clickstream.train_inputs, clickstream.validation_inputs)
    initial_model_dir = work_dir / f"initial-{name}"
    model = load_embedding_model(args.model, device=device)
    model.save(initial_model_dir)
    del model
    release_memory()
    iteration = tracker.start_iteration(method.name, "benchmark", base_model=args.model)
    runner = TrialRunner(method, data, initial_model_dir, tracker, iteration, device=device)
    settings = HyperparameterSearchSettings(
        pruner=pruner,
        sampler_seed=args.sampler_seed,
        warmup_validations=args.warmup_validations,
        reduction_factor=args.reduction_factor,
    )
    # A study of its own in memory that continue_search can go on with (one the search creates is dropped after).
    search = JobSearch(runner, optuna.storages.InMemoryStorage(), settings, f"benchmark-{name}")
    selection = search_parameters(
        runner,
        study_name=search.study_name,
        search_settings=settings,
        storage_url=search.storage,
        progress=on_progress,
    )
    chosen = tracker.get_best_run(iteration.experiment_id)
    refit_started = time.perf_counter()
    if chosen is not None:  # as the pipeline does: the chosen run's recipe refit on every session, the job's only refit
        runner.refit_chosen_run(chosen.run_id)
    _common.synchronize(device)
    seconds = time.perf_counter() - started
    refit_seconds = time.perf_counter() - refit_started
    release_memory()

    scores = [outcome.metrics.get(method.main_metric, float("-inf")) for outcome in selection.outcomes]
    if not scores:
        raise SystemExit(f"job {name}: no trial finished")
    best_index = max(range(len(scores)), key=lambda index: scores[index])
    for index, outcome in enumerate(selection.outcomes):
        # the baseline (step 0), then the validations of training: the curve a pruner judges
        curve = [value for _, value in tracker.get_metric_history(outcome.run_id, method.main_metric)]
        if outcome.validations < len(curve):
            curve = curve[: outcome.validations]  # TrialRunner logs the kept validation again, last
        print(
            f"  {name} trial {index}: {outcome.state:<8} {outcome.validations} validations, "
            f"val NDCG@10 {scores[index]:.4f}, lr {outcome.params['query_lr']:.2e}, "
            f"temperature {outcome.params['temperature']}, layers {outcome.params['train_last_n_layers']}, "
            f"ended at {outcome_ends[index + 1] - started:.1f}s; curve {' '.join(f'{value:.4f}' for value in curve)}",
            flush=True,
        )
    ends = [outcome_ends[index + 1] - started for index in range(len(scores))]
    return JobResult(
        name=name,
        seconds=seconds,
        seconds_to_best=outcome_ends[best_index + 1] - started,
        best_ndcg=scores[best_index],
        trials=len(selection.outcomes),
        pruned=sum(1 for outcome in selection.outcomes if outcome.state == "pruned"),
        validations=sum(outcome.validations for outcome in selection.outcomes),
        refit_seconds=refit_seconds,
        run_ids=[outcome.run_id for outcome in selection.outcomes],
        best_after_trial=list(zip(ends, accumulate(scores, max), strict=True)),
        search=search,
    )


def continue_search(job: JobResult, target: float, args: argparse.Namespace, device: torch.device) -> Continuation:
    """The pruned job's study goes on for up to ``--extra-trials`` more trials, until its best validation NDCG@10
    is within ``--margin`` of ``target`` (the unpruned job's best): the time a pruned search takes to a model as good,
    when its trial count is not held to the unpruned one's. The seconds count the job's own trials up to that point
    (the pruned job's clock, not the unpruned job run between), then the chosen run's refit, as the pipeline would."""
    import dataclasses

    from embedding_studio.finetuning.errors import FineTuningCanceled
    from embedding_studio.finetuning.hpo import search_parameters
    from embedding_studio.models import release_memory

    runner = job.search.runner
    for seconds, best in job.best_after_trial:
        if best >= target - args.margin:
            return Continuation(trials=0, seconds=seconds + job.refit_seconds, best_ndcg=best, reached=True)
    metric = runner.method.main_metric
    extra = 0
    started = time.perf_counter()
    ended = started

    def on_progress(fraction: float, message: str) -> None:
        nonlocal ended, extra
        ended = time.perf_counter()
        extra += 1
        print(f"  pruned, going on: {message} at {ended - started:.1f}s, best so far {best_so_far():.4f}", flush=True)

    def best_run() -> Any:
        return runner.tracker.get_best_run(runner.iteration.experiment_id)

    def best_so_far() -> float:
        chosen = best_run()
        return float(chosen.metrics[metric]) if chosen is not None else float("-inf")

    runner.method = dataclasses.replace(runner.method, max_evals=job.trials + args.extra_trials)
    try:
        search_parameters(
            runner,
            study_name=job.search.study_name,
            search_settings=job.search.settings,
            storage_url=job.search.storage,
            progress=on_progress,
            should_stop=lambda: best_so_far() >= target - args.margin,
        )
    except FineTuningCanceled:
        pass  # the margin was reached
    to_target = ended - started
    best = best_so_far()
    chosen = best_run()
    refit_started = time.perf_counter()
    steps = runner.refit_chosen_run(chosen.run_id) if chosen is not None else 0
    _common.synchronize(device)
    # a run of the job's own trials was refit by the job already: count that refit
    refit_seconds = time.perf_counter() - refit_started if steps else job.refit_seconds
    release_memory()
    return Continuation(
        trials=extra,
        seconds=job.seconds - job.refit_seconds + to_target + refit_seconds,
        best_ndcg=best,
        reached=best >= target - args.margin,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from embedding_studio.finetuning.hpo import HyperparameterSearchSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_clickstream_arguments(parser)
    parser.add_argument("--trials", type=int, default=8, help="max_evals of each job")
    parser.add_argument(
        "--epochs", type=int, default=RECIPE_EPOCHS, help="num_epochs of every trial (the default method's)"
    )
    parser.add_argument("--batch-size", type=int, default=RECIPE_BATCH_SIZE, help="the default method's")
    parser.add_argument(
        "--pruner",
        choices=("median", "successive_halving"),
        default="median",
        help="the pruned job's HyperparameterSearchSettings.pruner (the product's default: median)",
    )
    defaults = HyperparameterSearchSettings()
    parser.add_argument(
        "--warmup-validations",
        type=int,
        default=defaults.warmup_validations,
        help="validations of a trial that never prune it (the product's default)",
    )
    parser.add_argument(
        "--reduction-factor",
        type=int,
        default=defaults.reduction_factor,
        help="successive halving's reduction factor (the product's default)",
    )
    parser.add_argument(
        "--test-each-n-inputs",
        type=float,
        default=1.0,
        help="validation interval: a share of an epoch (<= 1) or a number of inputs (the default method's: 1.0)",
    )
    parser.add_argument(
        "--jobs",
        choices=("both", "unpruned"),
        default="both",
        help="unpruned: only the unpruned job and the replays on it (choosing a pruner without a pruned job)",
    )
    parser.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        help="TPE's seed (default: --seed); another one on the same clickstream measures how far two searches "
        "of the same setting land apart by the sampler's draws alone",
    )
    parser.add_argument(
        "--extra-trials",
        type=int,
        default=0,
        help="after both jobs, the pruned job's search goes on for up to this many more trials until its best is "
        "within --margin of the unpruned job's: the time to a model as good, the trial count not held equal",
    )
    parser.add_argument("--margin", type=float, default=0.005, help="how close to the unpruned best counts as as good")
    parser.add_argument(
        "--replay-orders",
        type=int,
        default=200,
        help="random trial orders each pruner is replayed in on the unpruned job's curves (0: no replay)",
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.epochs < 1:
        parser.error("--trials and --epochs must be at least 1")
    if args.sampler_seed is None:
        args.sampler_seed = args.seed
    if args.test_each_n_inputs > 1:
        args.test_each_n_inputs = int(args.test_each_n_inputs)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from embedding_studio.tracking import ExperimentsManager

    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the per-trial lines below say what it would
    device = _common.resolve(args.device)
    print(f"device: {_common.describe_device(device)}", flush=True)
    clickstream = _common.simulate_clickstream(args, device)
    print(
        f"clickstream: {args.data.name}, corpus {len(clickstream.dataset.corpus)}, {len(clickstream.train_inputs)} "
        f"sessions, {clickstream.click_count} clicks; {args.trials} trials x {args.epochs} epochs, "
        f"validation every {args.test_each_n_inputs}, pruner {args.pruner} (warmup validations "
        f"{args.warmup_validations}, reduction factor {args.reduction_factor}), model {args.model}, seed {args.seed}, "
        f"sampler seed {args.sampler_seed}",
        flush=True,
    )
    continuation = None
    with tempfile.TemporaryDirectory(prefix="es-bench-hpo-") as directory:
        work_dir = Path(directory)
        tracker = ExperimentsManager(
            tracking_uri=f"sqlite:///{work_dir / 'mlflow.db'}", cache_dir=work_dir / "model-cache"
        )
        tracker.client  # noqa: B018  create and migrate the MLflow store before any clock starts
        pruned = (
            run_job("pruned", args.pruner, clickstream, args, device, tracker, work_dir)
            if args.jobs == "both"
            else None
        )
        unpruned = run_job("unpruned", "none", clickstream, args, device, tracker, work_dir)
        traces = (
            _pruning_replay.traces_from_tracker(tracker, unpruned.run_ids, "val_ndcg_at_10")
            if args.replay_orders
            else []
        )
        if pruned is not None and args.extra_trials:
            continuation = continue_search(pruned, unpruned.best_ndcg, args, device)

    print()
    if traces:
        costs = _pruning_replay.replay_costs(traces, unpruned.seconds)
        _pruning_replay.print_replays(traces, costs, unpruned.seconds, args.replay_orders, args.seed)
        print()
    header = (
        f"{'job':<10} {'wall s':>8} {'to best s':>10} {'best val NDCG@10':>17} {'trials':>7} {'pruned':>7} {'vals':>5} "
        f"{'refit s':>8}"
    )
    print(header)
    print("-" * len(header))
    for job in (pruned, unpruned) if pruned is not None else (unpruned,):
        print(
            f"{job.name:<10} {job.seconds:>8.1f} {job.seconds_to_best:>10.1f} {job.best_ndcg:>17.4f} "
            f"{job.trials:>7} {job.pruned:>7} {job.validations:>5} {job.refit_seconds:>8.1f}"
        )
    if pruned is None:
        return 0
    difference = pruned.best_ndcg - unpruned.best_ndcg
    print(
        f"ratio pruned/unpruned: wall {pruned.seconds / unpruned.seconds:.2f}x, to best "
        f"{pruned.seconds_to_best / unpruned.seconds_to_best:.2f}x (target <= 0.5x); "
        f"best NDCG@10 difference {difference:+.4f} (target within 0.005)"
    )
    if continuation is not None:
        outcome = "reached" if continuation.reached else "not reached"
        print(
            f"time to within {args.margin} of the unpruned best ({unpruned.best_ndcg:.4f}) with pruning: {outcome} "
            f"after {continuation.trials} more trials ({pruned.trials + continuation.trials} in all), best "
            f"{continuation.best_ndcg:.4f} ({continuation.best_ndcg - unpruned.best_ndcg:+.4f}), "
            f"{continuation.seconds:.1f}s with the chosen run's refit: "
            f"{continuation.seconds / (unpruned.seconds_to_best + unpruned.refit_seconds):.2f}x the unpruned job's own "
            f"time to its best with its refit (both known only in hindsight; "
            f"{continuation.seconds / unpruned.seconds:.2f}x its wall time)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
