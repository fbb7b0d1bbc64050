"""What each pruner would have saved on the trials an unpruned search really ran: an estimate, not a measurement.

One unpruned job validates every trial to its end, so its tracker holds each trial's whole validation curve and when
each validation was logged. Feeding those curves, in order, to a fresh Optuna study with another pruner
(``finetuning.hpo.make_pruner``, the product's) gives the decisions that pruner would take on these very trials,
and the clock gives what a trial stopped at validation k costs (its start to that validation, plus storing its
model). As in the product, a trial the pruner would stop goes on while its best validation leads every finished
run (``OptunaPruningCallback``). Trials do not refit: the job's one refit, of the chosen run after the trials
(``TrialRunner.refit_chosen_run``), is outside the trials' runs and costs both jobs about the same.

What it cannot know: under a pruner the sampler sees other values and draws other trials after the first pruned
one. Nor what the product's pruner is shown where it decides: the best of the fully trained weights and the weight
shares the fit chooses among after fitting (``OptunaPruningCallback``), which an unpruned job never scores during
fitting. The replay judges the fully trained weights' curve alone and prices none of those share encodes, so it
replays the product before that change, blind to the trials the shares keep and to what scoring them costs.
The trials' own order is replayed first; then random orders of the same trials (the method's defaults, enqueued
first, stay first) give the spread over orders, which is what a setting has to hold up under, not one draw.
Choosing a pruner on these figures, and then measuring the chosen one in a real job, avoids tuning the setting to
one 35-minute draw.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from embedding_studio.finetuning.hpo import HyperparameterSearchSettings, make_pruner


@dataclass(frozen=True)
class TrialTrace:
    """One complete trial of the unpruned job, times in seconds from its run's start."""

    baseline: float  # the untrained model's validation (the weights a trial keeps when nothing beat it)
    curve: tuple[float, ...]  # the validations during fitting, which a pruner sees as steps 1, 2, ...
    seconds_at: tuple[float, ...]  # when each of those was logged
    final: float  # the run's metric: its chosen weight share's validation
    seconds: float  # the whole run, the share validation and stored model included
    last_logged: float  # its last metric, after which only its model is stored


@dataclass(frozen=True)
class ReplayCosts:
    overhead: float  # the job's time outside its trials' runs (preparation, the sampler, the chosen run's refit)
    store_model: float  # a run's end after its last metric: what a stopped trial still pays


@dataclass(frozen=True)
class Replay:
    seconds: float
    best: float
    pruned: int


def traces_from_tracker(tracker: Any, run_ids: Sequence[str], metric: str) -> list[TrialTrace]:
    """The curves the tracker logged: step 0 is the baseline, the fit's validations follow, and ``TrialRunner``
    logs the kept validation last again (one step on), which is not a validation and is left out."""
    traces = []
    for run_id in run_ids:
        run = tracker.client.get_run(run_id)
        start = run.info.start_time
        history = sorted(tracker.client.get_metric_history(run_id, metric), key=lambda entry: entry.step)
        baseline = [entry for entry in history if entry.step == 0]
        fitted = [entry for entry in history if entry.step > 0][:-1]
        if not baseline or not fitted:
            raise SystemExit(f"run {run_id}: no baseline or no validation during fitting to replay")
        traces.append(
            TrialTrace(
                baseline=baseline[0].value,
                curve=tuple(entry.value for entry in fitted),
                seconds_at=tuple((entry.timestamp - start) / 1000 for entry in fitted),
                final=run.data.metrics[metric],
                seconds=(run.info.end_time - start) / 1000,
                last_logged=(history[-1].timestamp - start) / 1000,
            )
        )
    return traces


def replay_costs(traces: Sequence[TrialTrace], wall_seconds: float) -> ReplayCosts:
    return ReplayCosts(
        overhead=wall_seconds - sum(trace.seconds for trace in traces),
        store_model=statistics.median(trace.seconds - trace.last_logged for trace in traces),
    )


def replay(
    traces: Sequence[TrialTrace], order: Sequence[int], settings: HyperparameterSearchSettings, costs: ReplayCosts
) -> Replay:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(settings))
    seconds = costs.overhead
    best_finished = float("-inf")
    pruned = 0
    for index in order:
        trace = traces[index]
        trial = study.ask()
        stopped_at = 0
        for step, value in enumerate(trace.curve, start=1):
            trial.report(value, step)
            # OptunaPruningCallback: a trial whose best validation so far leads every finished run goes on
            if trial.should_prune() and max(trace.curve[:step]) < best_finished:
                stopped_at = step
                break
        if stopped_at:
            kept = max(trace.baseline, *trace.curve[:stopped_at])
            seconds += trace.seconds_at[stopped_at - 1] + costs.store_model
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            pruned += 1
        else:
            kept = trace.final
            seconds += trace.seconds
            study.tell(trial, trace.final)
        best_finished = max(best_finished, kept)
    return Replay(seconds=seconds, best=best_finished, pruned=pruned)


#: (label, settings) replayed on every unpruned job: the product's default, and the pruners a user can set.
REPLAYED: tuple[tuple[str, HyperparameterSearchSettings], ...] = (
    # No pruner replays the unpruned job itself: 1.00x in its order is the replay's check on its own cost model.
    ("none (check: 1.00x)", HyperparameterSearchSettings(pruner="none")),
    ("median, warmup 1 (default)", HyperparameterSearchSettings(pruner="median", warmup_validations=1)),
    ("median, warmup 0", HyperparameterSearchSettings(pruner="median", warmup_validations=0)),
    (
        "halving rf 2, warmup 0",
        HyperparameterSearchSettings(pruner="successive_halving", warmup_validations=0, reduction_factor=2),
    ),
    (
        "halving rf 3, warmup 0",
        HyperparameterSearchSettings(pruner="successive_halving", warmup_validations=0, reduction_factor=3),
    ),
    (
        "halving rf 4, warmup 0",
        HyperparameterSearchSettings(pruner="successive_halving", warmup_validations=0, reduction_factor=4),
    ),
    (
        "halving rf 4, warmup 1",
        HyperparameterSearchSettings(pruner="successive_halving", warmup_validations=1, reduction_factor=4),
    ),
)


def print_replays(
    traces: Sequence[TrialTrace], costs: ReplayCosts, wall_seconds: float, orders: int, seed: int
) -> None:
    unpruned_best = max(trace.final for trace in traces)
    generator = random.Random(seed)
    shuffled = []
    for _ in range(orders):
        rest = list(range(1, len(traces)))
        generator.shuffle(rest)
        shuffled.append([0, *rest])
    print(
        f"\nreplay on the unpruned job's {len(traces)} trials (an estimate: store a model {costs.store_model:.1f} s, "
        f"outside the runs {costs.overhead:.1f} s); {orders} random orders, defaults first; the fully trained "
        "weights' curves only (no weight-share figures at a decision, unlike the product)"
    )
    header = (
        f"{'pruner':<28} {'its order':>10} {'diff':>8} {'orders: mean':>13} {'p10-p90':>12} {'<=0.5x':>7} "
        f"{'worst diff':>11} {'pruned':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, settings in REPLAYED:
        own = replay(traces, range(len(traces)), settings, costs)
        results = [replay(traces, order, settings, costs) for order in shuffled]
        ratios = sorted(result.seconds / wall_seconds for result in results)
        worst = min(result.best - unpruned_best for result in results)
        deciles = statistics.quantiles(ratios, n=10) if len(ratios) > 1 else [ratios[0]] * 9
        print(
            f"{label:<28} {own.seconds / wall_seconds:>9.2f}x {own.best - unpruned_best:>+8.4f} "
            f"{statistics.fmean(ratios):>12.2f}x {deciles[0]:>5.2f}-{deciles[-1]:.2f}x "
            f"{sum(ratio <= 0.5 for ratio in ratios) / len(ratios):>6.0%} {worst:>+11.4f} "
            f"{statistics.fmean(result.pruned for result in results):>7.1f}"
        )
