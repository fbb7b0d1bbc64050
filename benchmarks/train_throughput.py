"""Training throughput: EmbeddingsFineTuner against sentence-transformers' SentenceTransformerTrainer + MNRL.

Both train, in one process and on one device, on the quality benchmark's simulated clickstream
(``_common.simulate_clickstream``: msmarco demo data, position-based clicks over the base model's top 10):

* ours: ``fit_fine_tuner`` on the sessions with the default method's recipe (``default_text.RECIPE``:
  in-batch negatives, InfoNCE in both directions), exactly as a trial runs it (the product's precision
  choice, ``fine_tuner.training_precision``: bf16 autocast where the GPU or CPU multiplies bf16 natively; its
  AdamW; cached tokens; length-bucketed batches). One example is one training row (a session with its clicked
  positives);
* the peer: ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` on every
  (query, clicked item) pair of the same sessions, ``NO_DUPLICATES`` batches, its default optimizer, at
  our precision (``bf16=True`` when ours runs bf16); and, when that is not the peer's own default (its
  ``bf16`` is off unless asked for, so on a CPU with native bf16), once more at its default, fp32. One
  example is one pair.

Same batch size, sequence length, learning rate and device. Only steady-state steps are timed: the
first ``--warmup-steps`` optimizer steps of each are excluded, CUDA is synchronized at both ends of the
window, and our validations inside the window are timed (synchronized) and subtracted (the peer has
none). Prints the device, examples/s of each, clicked pairs/s of each, the ratios to each peer run and the
precision of each.

    .venv/bin/python benchmarks/train_throughput.py --device cuda              # the issue's figure (GPU)
    .venv/bin/python benchmarks/train_throughput.py --device cpu --model /tmp/tiny-model --max-corpus 300 \\
        --sessions-per-query 4 --steps 10 --warmup-steps 2                      # smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import _common
import lightning.pytorch as pl
import torch

WINDOW_NOT_REACHED = (
    "training stopped after {done} of the {needed} steps the measurement needs ({why}); "
    "use more --sessions-per-query or fewer --steps/--warmup-steps"
)


@dataclass
class Throughput:
    name: str
    examples: int
    pairs: float
    seconds: float
    precision: str
    optimizer: str

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds


class SteadyStateWindow(pl.Callback):
    """Times optimizer steps ``warmup`` .. ``warmup + steps - 1`` of a Lightning fit, validations excluded."""

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device = device
        self.warmup = warmup
        self.steps = steps
        self.batches_started = 0
        self.batches_done = 0
        self.examples = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.excluded = 0.0
        self.validation_started: float | None = None
        self.precision = ""
        self.optimizer = ""

    @property
    def open(self) -> bool:
        return self.started is not None and self.ended is None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.precision = str(trainer.precision)
        optimizer = trainer.optimizers[0]
        self.optimizer = f"{type(optimizer).__name__} fused={optimizer.defaults.get('fused')}"

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, index: int) -> None:
        if self.batches_started == self.warmup:
            _common.synchronize(self.device)
            self.started = time.perf_counter()
        self.batches_started += 1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        if self.open:
            self.examples += int(batch["query_groups"].shape[0])  # a shape: no device sync
        self.batches_done += 1
        if self.batches_done == self.warmup + self.steps:
            _common.synchronize(self.device)
            self.ended = time.perf_counter()
            trainer.should_stop = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.open:
            _common.synchronize(self.device)
            self.validation_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.validation_started is not None:
            _common.synchronize(self.device)
            self.excluded += time.perf_counter() - self.validation_started
            self.validation_started = None


class StepProfile(pl.Callback):
    """Where a training step's time goes: wall time per phase over the timed window (the next batch's collation,
    forward and loss, backward, optimizer step with clipping), synchronized on a GPU, and torch's operator table
    over ``steps`` steps after the warm-up. Profiling slows a step, so these runs are never the throughput run."""

    PHASES = ("data", "forward + loss", "backward", "optimizer")

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device = device
        self.warmup = warmup
        self.steps = steps
        self.batch = 0
        self.mark = 0.0
        self.totals = dict.fromkeys(self.PHASES, 0.0)
        self.profiler: torch.profiler.profile | None = None
        self.table = ""

    def _lap(self, phase: str | None) -> None:
        _common.synchronize(self.device)
        now = time.perf_counter()
        if phase is not None and self.warmup <= self.batch < self.warmup + self.steps:
            self.totals[phase] += now - self.mark
        self.mark = now

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, index: int) -> None:
        self._lap("data" if self.batch > 0 else None)
        if self.batch == self.warmup:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._lap("forward + loss")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._lap("backward")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        self._lap("optimizer")
        self.batch += 1
        if self.batch == self.warmup + self.steps and self.profiler is not None:
            self.profiler.__exit__(None, None, None)
            sort = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
            self.table = self.profiler.key_averages().table(sort_by=sort, row_limit=15)
            self.profiler = None
            trainer.should_stop = True

    def report(self) -> str:
        total = sum(self.totals.values()) or 1.0
        lines = [f"  where a step of ours goes ({self.steps} steps after {self.warmup}, wall time per step):"]
        for phase, seconds in self.totals.items():
            lines.append(f"    {phase:<15} {1000 * seconds / self.steps:8.1f} ms  {100 * seconds / total:5.1f}%")
        return "\n".join([*lines, "  operators (torch.profiler, self time):", self.table])


def measure_ours(
    clickstream: _common.SimulatedClickstream,
    args: argparse.Namespace,
    device: torch.device,
    profile: StepProfile | None = None,
) -> Throughput | None:
    """Ours' steady-state rows/s; with ``profile``, prints where a step goes instead and returns None."""
    from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, fit_fine_tuner
    from embedding_studio.finetuning.params import FineTuningParams
    from embedding_studio.finetuning.plugins.default_text import RECIPE
    from embedding_studio.models import load_embedding_model, release_memory

    data = _common.prepare_data(clickstream.dataset, clickstream.train_inputs, clickstream.validation_inputs)
    needed = args.warmup_steps + args.steps
    # The default method's recipe (in-batch negatives, both directions, no IPS), at the benchmark's batch size,
    # length and learning rate; the refit on every session is a second fit and has no bearing on a step's speed.
    base = FineTuningParams(
        **{
            **RECIPE,
            "batch_size": args.batch_size,
            "max_seq_length": args.max_seq_length,
            "query_lr": args.lr,
            "item_lr": args.lr,
            "seed": args.seed,
            "refit_on_all_sessions": False,
            "training_dropout": args.dropout,
        }
    )
    model = load_embedding_model(args.model, device=device)
    # How many rows (labelled sessions) one epoch has decides how many epochs the window needs.
    probe = EmbeddingsFineTuner(model, data.items, data.query_retriever, base)
    rows = probe.preprocess_inputs(data.train_inputs, data.test_inputs).train
    mean_positives = sum(len(row.positive_items) for row in rows) / len(rows)
    batches_per_epoch = math.ceil(len(rows) / args.batch_size)
    del probe
    params = base.model_copy(update={"num_epochs": math.ceil(needed / batches_per_epoch) + 1})
    window = SteadyStateWindow(device, args.warmup_steps, args.steps)
    fine_tuner = EmbeddingsFineTuner(model, data.items, data.query_retriever, params)
    try:
        fit_fine_tuner(
            fine_tuner,
            data.train_inputs,
            data.test_inputs,
            params,
            test_each_n_inputs=10**9,  # one validation per epoch (a number of inputs larger than an epoch)
            callbacks=[window] if profile is None else [profile],
            device=device,
        )
    finally:
        del fine_tuner, model
        release_memory()
    if profile is not None:
        print(profile.report(), flush=True)
        return None
    if window.ended is None or window.started is None:
        raise SystemExit(
            WINDOW_NOT_REACHED.format(done=window.batches_done, needed=needed, why="early stopping or data ran out")
        )
    seconds = window.ended - window.started - window.excluded
    print(
        f"  ours: {len(rows)} training rows ({batches_per_epoch} batches/epoch, {mean_positives:.2f} clicked "
        f"positives per row), {params.num_epochs} epochs allowed; {window.excluded:.2f}s of validation excluded",
        flush=True,
    )
    return Throughput(
        name="ours (EmbeddingsFineTuner)",
        examples=window.examples,
        pairs=window.examples * mean_positives,
        seconds=seconds,
        precision=window.precision,
        optimizer=window.optimizer,
    )


def measure_peer(
    clickstream: _common.SimulatedClickstream, args: argparse.Namespace, device: torch.device, bf16: bool
) -> Throughput:
    """The peer's steady-state pairs/s; ``bf16``: its ``bf16=True`` (torch autocast, on a CPU too)."""
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from transformers import TrainerCallback
    except ImportError as error:
        raise SystemExit(
            f"the peer needs sentence-transformers' training extras ({error}); "
            "install them with: .venv/bin/pip install 'sentence-transformers[train]' (or the project's 'bench' extra)"
        ) from error

    from embedding_studio.models import load_embedding_model, release_memory

    pairs = quality_pairs(clickstream)
    needed = args.warmup_steps + args.steps
    state = {"started_steps": 0, "done_steps": 0, "examples": 0}
    times: dict[str, float] = {}

    class CountingLoss(MultipleNegativesRankingLoss):
        """MNRL that counts the pairs of the timed steps (from a shape: no device sync)."""

        def forward(self, sentence_features: Any, labels: Any) -> torch.Tensor:
            features = list(sentence_features)
            if "start" in times and "end" not in times:
                state["examples"] += int(next(iter(features[0].values())).shape[0])
            return super().forward(features, labels)

    class Window(TrainerCallback):
        def on_step_begin(self, training_args: Any, trainer_state: Any, control: Any, **kwargs: Any) -> None:
            if state["started_steps"] == args.warmup_steps:
                _common.synchronize(device)
                times["start"] = time.perf_counter()
            state["started_steps"] += 1

        def on_step_end(self, training_args: Any, trainer_state: Any, control: Any, **kwargs: Any) -> None:
            state["done_steps"] += 1
            if state["done_steps"] == needed:
                _common.synchronize(device)
                times["end"] = time.perf_counter()
                control.should_training_stop = True

    model = load_embedding_model(args.model, device=device).query_tower
    # As ours: the requested length, never beyond what the model's position embeddings hold.
    model.max_seq_length = min(args.max_seq_length, model.max_seq_length or args.max_seq_length)
    train_dataset = Dataset.from_dict(
        {"anchor": [query for query, _ in pairs], "positive": [item for _, item in pairs]}
    )
    with tempfile.TemporaryDirectory(prefix="es-bench-st-") as output_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=args.batch_size,
            max_steps=needed,
            learning_rate=args.lr,
            warmup_steps=max(1, int(0.1 * needed)),
            weight_decay=0.01,
            max_grad_norm=1.0,
            bf16=bf16,
            use_cpu=device.type != "cuda",
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            # The default filter reads the loss back every step (a host-device sync): leave the peer its best.
            logging_nan_inf_filter=False,
            report_to="none",
            disable_tqdm=True,
            seed=args.seed,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=training_args,
            train_dataset=train_dataset,
            loss=CountingLoss(model),
            callbacks=[Window()],
        )
        try:
            trainer.train()
            optimizer = trainer.optimizer
            optimizer_name = f"{type(optimizer).__name__} ({training_args.optim}) fused={_fused(optimizer)}"
        finally:
            del trainer, model
            release_memory()
    if "start" not in times or "end" not in times:
        raise SystemExit(WINDOW_NOT_REACHED.format(done=state["done_steps"], needed=needed, why="the peer stopped"))
    precision = "bf16-mixed" if training_args.bf16 else "32-true"
    print(f"  peer: {len(pairs)} (query, clicked item) pairs", flush=True)
    return Throughput(
        name=f"peer (ST Trainer + MNRL, {'bf16' if bf16 else 'fp32'})",
        examples=state["examples"],
        pairs=float(state["examples"]),
        seconds=times["end"] - times["start"],
        precision=precision,
        optimizer=optimizer_name,
    )


def _fused(optimizer: Any) -> Any:
    inner = getattr(optimizer, "optimizer", optimizer)
    return getattr(inner, "defaults", {}).get("fused")


def quality_pairs(clickstream: _common.SimulatedClickstream) -> list[tuple[str, str]]:
    return _common.quality.click_pairs(clickstream.train_inputs, clickstream.dataset)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_clickstream_arguments(parser)
    # Enough sessions that the default window (220 steps) fits in two epochs, so EarlyStopping (patience 3,
    # one validation per epoch) cannot end ours before the window does.
    parser.set_defaults(sessions_per_query=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--steps", type=int, default=200, help="timed optimizer steps of each")
    parser.add_argument("--warmup-steps", type=int, default=20, help="optimizer steps run before timing starts")
    parser.add_argument("--only", choices=("ours", "peer"), default=None, help="measure one side only")
    _common.quality.add_training_dropout_argument(parser)
    parser.add_argument(
        "--profile", action="store_true", help="instead of timing: profile --steps steps of ours and print where"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0 or args.batch_size < 2:
        parser.error("--steps must be >= 1, --warmup-steps >= 0 and --batch-size >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = _common.resolve(args.device)
    print(f"device: {_common.describe_device(device)}", flush=True)
    clickstream = _common.simulate_clickstream(args, device)
    print(
        f"clickstream: {args.data.name}, corpus {len(clickstream.dataset.corpus)}, {len(clickstream.train_queries)} "
        f"train queries, {len(clickstream.train_inputs)} sessions, {clickstream.click_count} clicks "
        f"(simulated in {clickstream.seconds:.1f}s)",
        flush=True,
    )
    if args.profile:
        measure_ours(clickstream, args, device, StepProfile(device, args.warmup_steps, args.steps))
        return 0
    results: list[Throughput] = []
    if args.only in (None, "ours"):
        ours = measure_ours(clickstream, args, device)
        assert ours is not None
        results.append(ours)
    ours_bf16 = _common.quality.trains_in_bf16(device)
    if args.only in (None, "peer"):
        results.append(measure_peer(clickstream, args, device, bf16=ours_bf16))
        if ours_bf16 and device.type != "cuda":
            results.append(measure_peer(clickstream, args, device, bf16=False))

    print()
    print(
        f"batch size {args.batch_size}, max sequence length {args.max_seq_length}, lr {args.lr}, "
        f"{args.steps} timed steps after {args.warmup_steps} warm-up steps, model {args.model}"
    )
    header = f"{'trainer':<44} {'examples/s':>11} {'pairs/s':>9} {'examples':>9} {'seconds':>8}  precision / optimizer"
    print(header)
    print("-" * len(header))
    for result in results:
        print(
            f"{result.name:<44} {result.examples_per_second:>11.1f} {result.pairs_per_second:>9.1f} "
            f"{result.examples:>9} {result.seconds:>8.2f}  {result.precision} / {result.optimizer}"
        )
    if len(results) >= 2 and args.only is None:
        ours, *peers = results
        for peer in peers:
            print(
                f"ratio ours/{peer.name}: examples/s {ours.examples_per_second / peer.examples_per_second:.2f}x, "
                f"clicked pairs/s {ours.pairs_per_second / peer.pairs_per_second:.2f}x (target: >= 1.3x examples/s)"
            )
        print("(ours: one example = one session row with its clicked positives, and its hard negatives when the recipe")
        print(" has them; pairs/s = rows/s x mean clicked positives per row. peer: one example = one (query, clicked")
        print(" item) pair)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
