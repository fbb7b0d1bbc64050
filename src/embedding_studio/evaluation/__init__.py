"""Offline quality measurement on public retrieval datasets, for the demo and the benchmarks.

Not on the product path: the product learns from real clicks; this package simulates them from
relevance judgments and measures what the fine-tuning bought.
"""

from embedding_studio.evaluation.beir import (
    BeirDataset,
    DatasetError,
    QuerySplit,
    load_beir_dataset,
    sampled_split,
    split_from_qrels,
    split_queries,
)
from embedding_studio.evaluation.click_model import PositionBasedClickModel, default_examination
from embedding_studio.evaluation.metrics import (
    BootstrapInterval,
    QueryEvaluation,
    RetrievalEvaluation,
    encode_corpus,
    evaluate_rankings,
    evaluate_retrieval,
    evaluate_retrieval_detailed,
    paired_bootstrap,
    rank_corpus,
)

# The ranking formulas are the project's one definition (embedding_studio.metrics), offered here as before.
from embedding_studio.metrics import dcg, mrr_at_k, ndcg_at_k, recall_at_k

__all__ = [
    "BeirDataset",
    "BootstrapInterval",
    "DatasetError",
    "PositionBasedClickModel",
    "QueryEvaluation",
    "QuerySplit",
    "RetrievalEvaluation",
    "dcg",
    "default_examination",
    "encode_corpus",
    "evaluate_rankings",
    "evaluate_retrieval",
    "evaluate_retrieval_detailed",
    "load_beir_dataset",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_bootstrap",
    "rank_corpus",
    "recall_at_k",
    "sampled_split",
    "split_from_qrels",
    "split_queries",
]
