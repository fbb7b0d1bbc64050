"""``python -m examples.demo`` (``make demo``; ``make demo-quick`` adds ``--quick``): the demo's command line."""

from __future__ import annotations

from pathlib import Path

import typer

from embedding_studio.cli.errors import friendly_errors

from .run import DemoOptions, run_demo

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    quick: bool = typer.Option(
        False, "--quick", help="A smaller catalog, fewer users and held-out queries: 2-6 minutes on 2 CPU cores."
    ),
    dataset: str = typer.Option(
        "nfcorpus",
        "--data",
        "--dataset",
        help="nfcorpus (default: the repository's data/nfcorpus, medical articles the base model was never "
        "trained on, with its own training and test queries), dbpedia or msmarco (small slices, also in data/), "
        "or the path of any BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv and, optionally, "
        "qrels/train.tsv for the queries users search).",
    ),
    data_dir: Path | None = typer.Option(
        None, help="Where the demo's PostgreSQL, MLflow store, logs and report go (default: <data_dir>/demo)."
    ),
    port: int | None = typer.Option(None, help="Port of the demo's API (default: a free one)."),
    reuse: bool = typer.Option(False, "--reuse", help="Keep what a previous demo left in the data directory."),
    seed: int = typer.Option(
        0, help="Seed of the catalog slice, the query split, the simulated clicks and the fine-tuning."
    ),
    keep_serving: bool = typer.Option(False, "--keep-serving", help="Keep the API running afterwards (Ctrl-C stops)."),
) -> None:
    """Watch Embedding Studio improve a real search engine: index, simulated users, fine-tune, flip, measure.

    Starts an embedded PostgreSQL, the API and a worker, indexes the catalog with the base model, plays user
    sessions through the HTTP API (clicks drawn from the training queries' relevance labels by a position-based
    click model), fine-tunes with deploy_as_blue and prints held-out NDCG@10 / MRR@10 before and after, with a
    95% paired bootstrap interval of the NDCG@10 change, plus an HTML report.

    Examples:

      python -m examples.demo

      python -m examples.demo --quick --seed 1

      python -m examples.demo --data ~/data/scifact --data-dir /tmp/es-demo --keep-serving
    """
    with friendly_errors():
        run_demo(
            DemoOptions(
                quick=quick,
                dataset=dataset,
                data_dir=data_dir,
                port=port,
                reuse=reuse,
                seed=seed,
                keep_serving=keep_serving,
            )
        )


if __name__ == "__main__":
    app()
