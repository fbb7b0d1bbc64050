"""Scale check: the quality benchmark's flow on 10%, 25%, 50% and 100% of the simulated clickstream.

One seed of ``quality.py``'s flow (same split, same base-model ranking, same position-based clicks,
same training code: ``quality.train_ours``, optionally ``quality.train_mnrl``), trained on a growing
share of the training sessions: a fixed random order of the sessions (seeded), of which each share
takes a prefix, so every smaller share is inside the larger ones. The validation sessions stay the
same. Prints a table of share, sessions, clicks, training seconds, evaluation seconds and held-out
NDCG@10 (base model too), and how training time grew relative to the smallest share.

Options not listed below (``--epochs``, ``--lr``, ``--loss``, ``--batch-size``, ...) go to
``quality.py``'s parser and mean what they mean there.

    .venv/bin/python benchmarks/scale.py --device cuda --data ../shared/data/msmarco     # the issue's table (GPU)
    .venv/bin/python benchmarks/scale.py --device cpu --model /tmp/tiny-model --max-corpus 300 \\
        --sessions-per-query 4                                                        # smoke run
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import _common
import torch

from embedding_studio.evaluation import evaluate_retrieval


@dataclass
class ShareResult:
    share: float
    sessions: int
    clicks: int
    train_seconds: float
    eval_seconds: float
    ndcg: float
    mnrl_seconds: float | None = None
    mnrl_ndcg: float | None = None


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.add_clickstream_arguments(parser)
    parser.add_argument("--shares", default="0.1,0.25,0.5,1.0", help="shares of the training sessions, comma separated")
    parser.add_argument(
        "--with-mnrl",
        action="store_true",
        help="also time quality.py's MNRL fine-tune per share (needs a sentence-transformers model, e.g. the default)",
    )
    args, rest = parser.parse_known_args(argv)
    try:
        args.share_values = sorted({float(share) for share in args.shares.split(",") if share.strip()})
    except ValueError:
        parser.error(f"--shares must be numbers in (0, 1], comma separated; got {args.shares!r}")
    if not args.share_values or not all(0 < share <= 1 for share in args.share_values):
        parser.error(f"--shares must be numbers in (0, 1], comma separated; got {args.shares!r}")
    quality_args = _common.quality.parse_args(rest)
    quality_args.base_model = args.model
    return args, quality_args


def main(argv: Sequence[str] | None = None) -> int:
    from embedding_studio.models import release_memory

    args, quality_args = parse_args(argv)
    device = _common.resolve(args.device)
    print(f"device: {_common.describe_device(device)}", flush=True)
    clickstream = _common.simulate_clickstream(args, device, evaluate_base=True)
    dataset = clickstream.dataset
    order = list(range(len(clickstream.train_inputs)))
    random.Random(args.seed).shuffle(order)
    print(
        f"clickstream: {args.data.name}, corpus {len(dataset.corpus)}, {len(clickstream.train_queries)} train / "
        f"{len(clickstream.test_queries)} test queries, {len(order)} sessions, {clickstream.click_count} clicks; "
        f"epochs {quality_args.epochs}, model {args.model}",
        flush=True,
    )
    results: list[ShareResult] = []
    for share in args.share_values:
        keep = sorted(order[: max(1, round(share * len(order)))])
        train_inputs = [clickstream.train_inputs[index] for index in keep]
        result = ShareResult(share, len(train_inputs), sum(len(each.events) for each in train_inputs), 0.0, 0.0, 0.0)
        started = time.perf_counter()
        model = _common.quality.train_ours(
            dataset, train_inputs, clickstream.validation_inputs, quality_args, args.seed, device
        )
        _common.synchronize(device)
        result.train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result.ndcg = evaluate_retrieval(model, dataset, clickstream.test_queries)["ndcg@10"]
        result.eval_seconds = time.perf_counter() - started
        del model
        release_memory()
        if args.with_mnrl:
            pairs = _common.quality.click_pairs(train_inputs, dataset)
            started = time.perf_counter()
            mnrl = _common.quality.train_mnrl(pairs, quality_args, args.seed, device)
            _common.synchronize(device)
            result.mnrl_seconds = time.perf_counter() - started
            result.mnrl_ndcg = evaluate_retrieval(mnrl, dataset, clickstream.test_queries)["ndcg@10"]
            del mnrl
            release_memory()
        results.append(result)
        print(
            f"  share {share:.0%}: {result.sessions} sessions, train {result.train_seconds:.1f}s, "
            f"NDCG@10 {result.ndcg:.4f}",
            flush=True,
        )
    print_table(results, clickstream.base_metrics["ndcg@10"])
    return 0


def print_table(results: list[ShareResult], base_ndcg: float) -> None:
    with_mnrl = results[0].mnrl_seconds is not None
    print()
    header = (
        f"{'share':>6} {'sessions':>9} {'clicks':>7} {'train s':>8} {'x smallest':>10} {'eval s':>7} {'NDCG@10':>8} "
        f"{'gain':>8}"
    )
    if with_mnrl:
        header += f" {'mnrl s':>7} {'mnrl NDCG@10':>13}"
    print(header)
    print("-" * len(header))
    smallest = results[0].train_seconds
    for result in results:
        line = (
            f"{result.share:>6.0%} {result.sessions:>9} {result.clicks:>7} {result.train_seconds:>8.1f} "
            f"{result.train_seconds / smallest:>10.2f} {result.eval_seconds:>7.1f} {result.ndcg:>8.4f} "
            f"{result.ndcg - base_ndcg:>+8.4f}"
        )
        if with_mnrl:
            line += f" {result.mnrl_seconds:>7.1f} {result.mnrl_ndcg:>13.4f}"
        print(line)
    print(f"base model NDCG@10 on the held-out queries: {base_ndcg:.4f}")
    if torch.cuda.is_available():
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated() / _common.MIB:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
