"""GPU memory across trials: does allocated CUDA memory come back after each trial and after the task?

Runs one fine-tuning task's trial path in one process: the simulated clickstream of the quality
benchmark is prepared once, the initial model saved once, then three trials run through the
project's ``TrialRunner`` (fresh model from disk, training, MLflow run with the model artifact,
memory released), with three learning rates; then the tracker picks the best run and deletes the
other models, and everything the task held is dropped.

Prints ``torch.cuda.memory_allocated`` at the start (after the clickstream's base model is freed),
before and after each trial and after the task, and each trial's peak (``max_memory_allocated``,
reset before the trial). Exits 1 if memory after any trial or after the task is more than 64 MiB
above the start. Without CUDA it says so, runs the same trials and reports 0 (a smoke run).

    .venv/bin/python benchmarks/gpu_memory.py --device cuda                         # the issue's check (GPU)
    .venv/bin/python benchmarks/gpu_memory.py --device cpu --model /tmp/tiny-model --max-corpus 300 \\
        --sessions-per-query 4 --epochs 1                                         # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import _common
import torch

TOLERANCE = 64 * _common.MIB
LEARNING_RATES = (2e-5, 5e-5, 1e-4)


def allocated(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize(device)
    return int(torch.cuda.memory_allocated(device))


def peak(device: torch.device) -> int:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def mib(value: int) -> str:
    return f"{value / _common.MIB:9.1f} MiB"


def run_task(
    clickstream: _common.SimulatedClickstream, args: argparse.Namespace, device: torch.device, start: int
) -> list[tuple[str, int]]:
    """The task's trials; returns (label, allocated bytes) at each point that must be back near ``start``."""
    from embedding_studio.finetuning.hpo import TrialRunner
    from embedding_studio.finetuning.plugins.default_text import create_plugin
    from embedding_studio.models import load_embedding_model, release_memory
    from embedding_studio.tracking import ExperimentsManager

    checkpoints: list[tuple[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="es-bench-memory-") as directory:
        work_dir = Path(directory)
        tracker = ExperimentsManager(
            tracking_uri=f"sqlite:///{work_dir / 'mlflow.db'}", cache_dir=work_dir / "model-cache"
        )
        method = create_plugin(
            name="benchmark_memory", base_model=args.model, num_epochs=args.epochs, batch_size=args.batch_size
        )
        data = _common.prepare_data(clickstream.dataset, clickstream.train_inputs, clickstream.validation_inputs)
        model = load_embedding_model(args.model, device=device)
        model.save(work_dir / "initial")
        del model
        release_memory()
        print(f"after preparing data and saving the initial model: {mib(allocated(device))}", flush=True)
        iteration = tracker.start_iteration(method.name, "benchmark", base_model=args.model)
        runner = TrialRunner(method, data, work_dir / "initial", tracker, iteration, device=device)
        for index, learning_rate in enumerate(LEARNING_RATES):
            before = allocated(device)
            reset_peak(device)
            outcome = runner.run({**method.base_params(), "query_lr": learning_rate, "item_lr": learning_rate})
            after = allocated(device)
            trial_peak = peak(device)
            print(
                f"trial {index} (lr {learning_rate:.0e}): before {mib(before)}, after {mib(after)} "
                f"({(after - start) / _common.MIB:+.1f} MiB vs start), peak {mib(trial_peak)}; "
                f"val NDCG@10 {outcome.metrics.get('val_ndcg_at_10', float('nan')):.4f}",
                flush=True,
            )
            checkpoints.append((f"after trial {index}", after))
        best = tracker.get_best_run(iteration.experiment_id)
        tracker.delete_non_best_models(iteration.experiment_id)
        print(f"best run {best.run_id if best else None}", flush=True)
        del runner, data, tracker
    release_memory()
    return checkpoints


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_clickstream_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from embedding_studio.models import release_memory

    args = parse_args(argv)
    device = _common.resolve(args.device)
    print(f"device: {_common.describe_device(device)}", flush=True)
    if device.type != "cuda":
        print("CUDA is unavailable (or not asked for): running the trials anyway; every figure below is 0", flush=True)
    clickstream = _common.simulate_clickstream(args, device)
    release_memory()
    start = allocated(device)
    print(f"start (clickstream simulated, its base model freed): {mib(start)}", flush=True)
    checkpoints = run_task(clickstream, args, device, start)
    after_task = allocated(device)
    checkpoints.append(("after the task", after_task))
    print(f"after the task: {mib(after_task)} ({(after_task - start) / _common.MIB:+.1f} MiB vs start)")
    over = [(label, value) for label, value in checkpoints if value - start > TOLERANCE]
    if over:
        for label, value in over:
            print(
                f"FAIL: {label} allocated memory is {(value - start) / _common.MIB:.1f} MiB above the start (> 64 MiB)"
            )
        return 1
    print("OK: allocated memory came back within 64 MiB of the start after every trial and after the task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
