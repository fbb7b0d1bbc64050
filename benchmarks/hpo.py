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
    selection = search_parameters(
        runner,
        study_name=f"benchmark-{name}",
        search_settings=HyperparameterSearchSettings(
            pruner=pruner,
            sampler_seed=args.seed,
            warmup_validations=args.warmup_validations,
            reduction_factor=args.reduction_factor,
        ),
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
        "--replay-orders",
        type=int,
        default=200,
        help="random trial orders each pruner is replayed in on the unpruned job's curves (0: no replay)",
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.epochs < 1:
        parser.error("--trials and --epochs must be at least 1")
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
        f"{args.warmup_validations}, reduction factor {args.reduction_factor}), model {args.model}",
        flush=True,
    )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
