"""Does the click-based validation that chooses weights agree with human judgments of the same queries?

The fine-tuner keeps the checkpoint, the weight share and (through the deployment gate) the model that its
retrieval validation scores best, and that validation can only grade by what held-out users clicked: items the
*logging* model (the one that showed the results) put in its top 10. This benchmark measures how far that
signal can be trusted, on a dataset whose held-out training queries also carry human judgments:

1. simulate the clickstream exactly as ``quality.py`` does (same split, seed, click model, validation share);
2. train ours on the training sessions as ``quality.py`` does, without the refit, and keep the fully trained
   weights whatever validation says (share 1), then the half-way mix (share 0.5);
3. train sentence-transformers' MNRL on the same training sessions;
4. for base and each of them, score by exact search over the whole corpus at the model's own length:
   - ``test``: NDCG@10 of the dataset's test queries against their judgments (what ``quality.py`` reports);
   - ``val human``: NDCG@10 of the held-out validation queries against their *human* judgments (train qrels);
   - ``val clicks``: the same queries graded as the validator grades them, ``rel(q, d)`` = share of the query's
     held-out sessions that clicked ``d``;
   - ``val clicks IPS``: each click weighted by ``1 / η(rank)``, ``η`` the position-based examination curve
     estimated from the sessions by EM (``finetuning.features.estimate_propensities``), clipped at 20.

A selector that agrees with people orders the rows as ``val human`` does.

    .venv/bin/python benchmarks/selector_agreement.py --data ../shared/data/nfcorpus --seed 2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import quality  # noqa: E402
import torch  # noqa: E402

from embedding_studio.clickstream.types import FineTuningInput  # noqa: E402
from embedding_studio.evaluation import encode_corpus, load_beir_dataset, rank_corpus, sampled_split  # noqa: E402
from embedding_studio.finetuning import fine_tuner as fine_tuner_module  # noqa: E402
from embedding_studio.finetuning.features import PropensityCurve, estimate_propensities  # noqa: E402
from embedding_studio.finetuning.weights import interpolate_weights  # noqa: E402
from embedding_studio.metrics import ndcg_at_k  # noqa: E402

MAX_INVERSE_PROPENSITY = 20.0


def session_query_id(session: FineTuningInput) -> str:
    """``quality.simulate_sessions`` names sessions ``s-<query id>-<index>``."""
    return session.session_id[2:].rsplit("-", 1)[0]


def click_relevance(sessions: Sequence[FineTuningInput], curve: PropensityCurve | None) -> dict[str, dict[str, float]]:
    """``rel(q, d) = (1/n_q) Σ_sessions click(d) · w`` with ``w = 1`` or ``min(1/η(rank), 20)``.

    Queries without a click are dropped, as the validator drops them."""
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for session in sessions:
        query_id = session_query_id(session)
        counts[query_id] = counts.get(query_id, 0) + 1
        per_item = sums.setdefault(query_id, {})
        for item_id in session.events:
            weight = 1.0 if curve is None else curve.inverse_weight(session.ranks[item_id], MAX_INVERSE_PROPENSITY)
            per_item[item_id] = per_item.get(item_id, 0.0) + weight
    return {query_id: {d: v / counts[query_id] for d, v in items.items()} for query_id, items in sums.items() if items}


def mean_ndcg(rankings: Mapping[str, Sequence[str]], judgments: Mapping[str, Mapping[str, float]]) -> float:
    return float(np.mean([ndcg_at_k(list(rankings[query_id]), judgments[query_id]) for query_id in judgments]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a BEIR-layout dataset folder with qrels/train.tsv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sessions-per-query", type=int, default=3)
    own = parser.parse_args(argv)
    args = quality.parse_args(
        ["--device", "cpu", "--data", own.data, "--sessions-per-query", str(own.sessions_per_query), "--no-refit"]
    )
    device = torch.device("cpu")
    dataset = load_beir_dataset(own.data)
    dataset.name = Path(own.data).name
    if not dataset.has_train_split:
        raise SystemExit(f"{own.data} has no qrels/train.tsv: held-out training queries would have no judgments")
    from embedding_studio.models import load_embedding_model

    base = load_embedding_model(args.base_model)
    base_corpus = encode_corpus(base, dataset)
    split = sampled_split(dataset, args.test_share, own.seed, args.max_train_queries)
    shown = rank_corpus(base, dataset, split.train, corpus_embeddings=base_corpus, top_k=quality.SHOWN_RESULTS)
    train_inputs, validation_inputs = quality.simulate_training_clickstream(
        dataset, shown, own.sessions_per_query, args.validation_share, own.seed
    )
    curve = estimate_propensities([*train_inputs, *validation_inputs])
    validation_ids = sorted({session_query_id(session) for session in validation_inputs})
    graded = {
        "val human": {query_id: dataset.train_qrels.get(query_id, {}) for query_id in validation_ids},
        "val clicks": click_relevance(validation_inputs, None),
        "val clicks IPS": click_relevance(validation_inputs, curve),
    }
    test_judgments = {query_id: dataset.qrels.get(query_id, {}) for query_id in split.test}
    print(f"{dataset.name} seed {own.seed}: {len(split.test)} test queries, {len(validation_ids)} validation queries")
    print("examination curve η(1..10): " + ", ".join(f"{value:.3f}" for value in curve.propensities[:10]))
    rows: list[tuple[str, dict[str, float]]] = []

    def score(name: str, model: Any, corpus: np.ndarray | None = None) -> None:
        corpus = encode_corpus(model, dataset) if corpus is None else corpus
        test = rank_corpus(model, dataset, split.test, corpus_embeddings=corpus, top_k=10)
        validation = rank_corpus(model, dataset, validation_ids, corpus_embeddings=corpus, top_k=10)
        figures = {"test": mean_ndcg(test, test_judgments)}
        figures.update({label: mean_ndcg(validation, judged) for label, judged in graded.items()})
        rows.append((name, figures))
        print(f"  [{time.strftime('%H:%M:%S')}] {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))

    score("base", base, base_corpus)
    captured: dict[str, Any] = {}
    choose = fine_tuner_module.choose_weight_share

    def capture_trained(model: Any, initial_state: Any, trained: Any, *rest: Any, **options: Any) -> Any:
        captured["initial"], captured["tuned"] = initial_state, trained.state
        return choose(model, initial_state, trained, *rest, **options)

    fine_tuner_module.choose_weight_share = capture_trained  # type: ignore[assignment]
    try:
        ours = quality.train_ours(dataset, train_inputs, validation_inputs, args, own.seed, device)
    finally:
        fine_tuner_module.choose_weight_share = choose  # type: ignore[assignment]
    for share in (1.0, 0.5):
        interpolate_weights(ours, captured["initial"], captured["tuned"], share)
        score(f"ours, share {share:g}", ours)
    del ours
    score("mnrl", quality.train_mnrl(quality.click_pairs(train_inputs, dataset), args, own.seed, device))

    labels = list(rows[0][1])
    print()
    print(f"{'model':<16}" + "".join(f"{label:>16}" for label in labels))
    for name, figures in rows:
        print(f"{name:<16}" + "".join(f"{figures[label]:>16.4f}" for label in labels))
    order = {label: [name for name, _ in sorted(rows, key=lambda row: -row[1][label])] for label in labels}
    for label in labels[2:]:
        print(f"{label} orders the models as val human does: {order[label] == order['val human']}")
    print(f"device: {quality.describe_device(device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
