"""What the speed benchmarks of the GPU issue share: the quality benchmark's simulated clickstream, prepared once.

The clickstream is the one ``quality.py`` trains on (``BeirDataset.relevant_first`` and its
``simulate_training_clickstream`` are called, not copied): split the judged queries, rank the corpus with
the base model, show each training query's top 10 and simulate clicks with a position-based click model.
``prepare_data`` turns it into the ``PreparedData`` every HPO trial shares, the way ``quality.train_ours`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import quality  # noqa: E402  (benchmarks/quality.py: the clickstream simulation these figures build on)
import torch  # noqa: E402

from embedding_studio.clickstream.types import FineTuningInput  # noqa: E402
from embedding_studio.evaluation import (  # noqa: E402
    BeirDataset,
    encode_corpus,
    evaluate_retrieval,
    load_beir_dataset,
    rank_corpus,
    sampled_split,
)

DEFAULT_DATA = quality.DEMO_DATA / "msmarco"
MIB = 1024 * 1024


@dataclass
class SimulatedClickstream:
    dataset: BeirDataset
    train_queries: list[str]
    test_queries: list[str]
    train_inputs: list[FineTuningInput]
    validation_inputs: list[FineTuningInput]
    base_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def click_count(self) -> int:
        return sum(len(each.events) for each in self.train_inputs)


def add_clickstream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a BEIR-layout dataset folder")
    parser.add_argument(
        "--model", default="all-MiniLM-L6-v2", help="base model: 'all-MiniLM-L6-v2' or a local model directory"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-corpus", type=int, default=None, help="keep at most this many items (relevant first)")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of the judged queries held out")
    parser.add_argument("--sessions-per-query", type=int, default=30)
    parser.add_argument(
        "--max-train-queries", type=int, default=None, help="a seeded sample of this many training queries (a slice)"
    )
    parser.add_argument(
        "--validation-share", type=float, default=0.2, help="share of training sessions (whole queries) validated on"
    )


def simulate_clickstream(
    args: argparse.Namespace, device: torch.device, evaluate_base: bool = False
) -> SimulatedClickstream:
    """The quality benchmark's clickstream for one seed; the base model is freed before returning."""
    from embedding_studio.models import load_embedding_model, release_memory

    started = time.perf_counter()
    dataset = load_beir_dataset(args.data).relevant_first(args.max_corpus)
    # The dataset's own split when it has one; --max-train-queries keeps a seeded sample of its training queries.
    split = sampled_split(dataset, args.test_share, args.seed, args.max_train_queries)
    base = load_embedding_model(args.model, device=device)
    corpus_embeddings = encode_corpus(base, dataset)
    shown = rank_corpus(base, dataset, split.train, corpus_embeddings=corpus_embeddings, top_k=quality.SHOWN_RESULTS)
    base_metrics = (
        evaluate_retrieval(base, dataset, split.test, corpus_embeddings=corpus_embeddings) if evaluate_base else {}
    )
    del base, corpus_embeddings
    release_memory()
    train_inputs, validation_inputs = quality.simulate_training_clickstream(
        dataset, shown, args.sessions_per_query, args.validation_share, args.seed
    )
    return SimulatedClickstream(
        dataset=dataset,
        train_queries=list(split.train),
        test_queries=list(split.test),
        train_inputs=train_inputs,
        validation_inputs=validation_inputs,
        base_metrics=base_metrics,
        seconds=time.perf_counter() - started,
    )


def prepare_data(
    dataset: BeirDataset, train_inputs: list[FineTuningInput], validation_inputs: list[FineTuningInput]
) -> Any:
    """The PreparedData all trials of a job share: the shown items through the ItemSetManager, split as given."""
    from embedding_studio.finetuning.hpo import PreparedData
    from embedding_studio.finetuning.query_retriever import TextQueryRetriever
    from embedding_studio.items import ItemSetManager
    from embedding_studio.items.manager import SimpleTrainingDataset
    from embedding_studio.items.types import DownloadedItem, ItemMeta

    shown_ids = dict.fromkeys(item for each in [*train_inputs, *validation_inputs] for item in each.results)
    downloaded = [DownloadedItem(ItemMeta(item_id), dataset.item_text(item_id)) for item_id in shown_ids]
    items, clickstream = ItemSetManager()(downloaded, SimpleTrainingDataset(train_inputs, validation_inputs))
    return PreparedData(
        train_inputs=list(clickstream.train),
        test_inputs=list(clickstream.test),
        items=items,
        query_retriever=TextQueryRetriever(),
    )


def resolve(device_setting: str) -> torch.device:
    from embedding_studio.models import resolve_device

    return resolve_device(device_setting)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read after it measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows, for the machine line."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    return quality.describe_device(device)
