"""The demo's pieces that need no servers: dataset choice, catalog slicing, the method options it trains with.

The demo is an example (``examples/demo``, ``python -m examples.demo``), run over the public client; these tests
import it from the repository root, as ``make demo`` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from embedding_studio.evaluation import BeirDataset, DatasetError, load_beir_dataset, split_queries
from examples.demo.datasets import (
    DEFAULT_DATASET,
    REPO_DATA_DIR,
    demo_catalog,
    demo_split,
    resolve_dataset,
    write_catalog,
)
from examples.demo.outcome import kept_untrained
from examples.demo.profiles import DEMO_METHOD, PROFILES, method_options
from examples.demo.services import stop_stale_postgres
from examples.demo.users import play_sessions


def test_datasets_by_name_or_path(tmp_path: Path) -> None:
    assert resolve_dataset("nfcorpus") == REPO_DATA_DIR / "nfcorpus"  # the repository's copy, outside the package
    assert resolve_dataset("msmarco").name == "msmarco"
    assert resolve_dataset("dbpedia").name == "dbpedia"
    assert resolve_dataset(str(tmp_path)) == tmp_path
    with pytest.raises(DatasetError, match="nfcorpus"):
        resolve_dataset("no-such-set")


def test_nfcorpus_lives_in_the_repository_with_its_attribution_and_is_not_packaged() -> None:
    folder = REPO_DATA_DIR / DEFAULT_DATASET
    assert REPO_DATA_DIR.parent == Path(__file__).resolve().parents[2]  # the repository root, not src/
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (folder / name).is_file(), name
    attribution = (REPO_DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert "Boteva" in attribution and "ECIR 2016" in attribution and "non-commercial" in attribution
    pyproject = (REPO_DATA_DIR.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert 'where = ["src"]' in pyproject and "nfcorpus" not in pyproject
    # The msmarco and dbpedia slices sit beside it, not in the package either.
    assert "demo_data" not in pyproject and not (REPO_DATA_DIR.parent / "src/embedding_studio/demo_data").exists()
    for name in ("msmarco", "dbpedia"):
        assert (REPO_DATA_DIR / name / "corpus.jsonl").is_file(), name


@pytest.fixture(scope="module")
def nfcorpus() -> BeirDataset:
    return load_beir_dataset(resolve_dataset(DEFAULT_DATASET))


@pytest.mark.parametrize("name", ["quick", "full"])
def test_nfcorpus_profiles_train_on_its_training_queries_and_score_at_least_100_test_queries(
    nfcorpus: BeirDataset, name: str
) -> None:
    profile = PROFILES[name]
    catalog = demo_catalog(nfcorpus, profile, seed=0)
    assert profile.max_catalog_items is not None and len(catalog.corpus) == profile.max_catalog_items
    # Every judgment left, test or training, is of an item in the catalog: every figure is achievable and every
    # training query left has something to click.
    for judgments in (catalog.qrels, catalog.train_qrels):
        for judged in judgments.values():
            assert judged and all(item_id in catalog.corpus for item_id in judged)
    split = demo_split(catalog, profile, seed=0)
    assert len(split.test) >= 100
    assert profile.train_queries is None or len(split.train) == profile.train_queries
    assert not set(split.train) & set(split.test)
    assert all(catalog.train_qrels.get(query_id) for query_id in split.train)  # clicks come from train qrels
    assert all(query_id not in nfcorpus.train_qrels for query_id in split.test)  # scored on its own test queries
    assert all(catalog.relevant_items(query_id) for query_id in split.test)
    again = demo_split(demo_catalog(nfcorpus, profile, seed=0), profile, seed=0)
    assert again == split and demo_catalog(nfcorpus, profile, seed=0).item_ids == catalog.item_ids


def test_a_dataset_without_its_own_split_is_split_at_random_and_capped_relevant_first() -> None:
    dataset = load_beir_dataset(resolve_dataset("dbpedia"))  # 865 relevant items of 5000, no qrels/train.tsv
    profile = PROFILES["quick"]
    catalog = demo_catalog(dataset, profile, seed=0)
    assert profile.max_catalog_items is not None
    assert len(catalog.corpus) == profile.max_catalog_items
    relevant = {item_id for judged in dataset.qrels.values() for item_id, grade in judged.items() if grade > 0}
    relevant &= set(dataset.corpus)
    # Relevant items first, then the others: a cap below the relevant count holds relevant items only.
    if profile.max_catalog_items < len(relevant):
        assert set(catalog.corpus) <= relevant
    else:
        assert relevant <= set(catalog.corpus)
    for judged in catalog.qrels.values():
        assert judged and all(item_id in catalog.corpus for item_id in judged)  # every judgment is achievable
    split = demo_split(catalog, profile, seed=0)
    assert split == split_queries(catalog, test_share=profile.test_share, seed=0)
    assert split.train and split.test


class _FakeClient:
    """The public client's search and add_events: search shows the items of ``shown``; clicks are recorded."""

    def __init__(self, shown: list[str]) -> None:
        self.shown = shown
        self.searches = 0
        self.events: dict[str, list[str]] = {}

    def search(self, query: str, limit: int = 10, offset: int = 0, user_id: str | None = None) -> SimpleNamespace:
        self.searches += 1
        results = [SimpleNamespace(item_id=item_id, score=1.0) for item_id in self.shown[:limit]]
        return SimpleNamespace(session_id=f"s{self.searches}", model_id="m", results=results)

    def add_events(self, session_id: str, events: list[dict[str, str]]) -> None:
        self.events[session_id] = [event["item_id"] for event in events]


def test_simulated_users_click_by_the_training_judgments_never_the_test_ones() -> None:
    shown = ["a", "b", "c", "d", "e"]
    dataset = BeirDataset(
        corpus={item_id: ("", item_id) for item_id in [*shown, "z"]},
        queries={"train-q": "a training question", "test-q": "a test question"},
        qrels={"test-q": {"z": 2}},  # the test judgments: nothing shown to train-q is judged there
        train_qrels={"train-q": dict.fromkeys(shown, 1)},
    )
    client = _FakeClient(shown)
    sessions, clicks = play_sessions(client, dataset, ["train-q"], 60, seed=0, advance=lambda: None)  # type: ignore[arg-type]
    assert sessions == 60 == client.searches
    # P(click) = P(examine r) x 0.2 for a grade-1 item: about 28 clicks in 60 sessions; noise alone gives about 3.
    assert clicks >= 15
    assert {item_id for clicked in client.events.values() for item_id in clicked} <= set(shown)


def test_untrained_weights_are_recognised_from_the_selection_metric_history() -> None:
    assert kept_untrained([(0, 0.43), (15, 0.41), (30, 0.43)])  # training never beat the baseline
    assert kept_untrained([(0, 0.43)])  # no validation after training at all
    assert not kept_untrained([(0, 0.43), (15, 0.45), (30, 0.44)])
    assert not kept_untrained([])  # nothing logged: nothing to claim


def test_written_catalog_is_what_the_loader_and_the_evaluation_both_read(tmp_path: Path) -> None:
    from embedding_studio.items import create_loader, item_text

    dataset = load_beir_dataset(resolve_dataset("dbpedia"))
    catalog = dataset.subset(set(dataset.item_ids[:25]))
    path = write_catalog(catalog, tmp_path / "catalog" / "corpus.jsonl")
    loader = create_loader("jsonl_catalog", path=str(path))
    loaded = {item.meta.item_id: item.data for batch in loader.load_all(10) for item in batch}
    assert set(loaded) == set(catalog.item_ids)
    for item_id, data in loaded.items():
        assert item_text(data) == catalog.item_text(item_id)  # offline figures score the texts search indexes


def test_demo_method_is_default_text_with_the_profile_budget() -> None:
    """The demo installs no method of its own: its task asks for default_text with the profile's budget and seed,
    and the server builds it as it builds any client's (``get_method(method, **method_options)``)."""
    from embedding_studio.finetuning.method import available_methods, get_method
    from embedding_studio.finetuning.plugins.default_text import create_plugin

    profile = PROFILES["quick"]
    options = method_options(profile, seed=7)
    assert json.loads(json.dumps(options)) == options  # they travel in the task's JSON request
    quick = get_method(DEMO_METHOD, **options)
    assert quick.name == DEMO_METHOD == "default_text"
    assert (quick.max_evals, quick.num_epochs) == (profile.max_evals, profile.num_epochs)
    assert quick.validation_pool_size == profile.validation_pool_size
    assert quick.split_seed == 7 and quick.validation_pool_seed == 7 and quick.fixed_params["seed"] == 7
    # The recipe is default_text's, whatever it is at the time: loss, batch, negatives, IPS, search space.
    default = create_plugin()
    assert {key: value for key, value in quick.fixed_params.items() if key != "seed"} == default.fixed_params
    assert (quick.loss, quick.batch_size, quick.test_each_n_inputs) == (
        default.loss,
        default.batch_size,
        default.test_each_n_inputs,
    )
    assert quick.search_space == default.search_space and quick.main_metric == default.main_metric
    full = get_method(DEMO_METHOD, **method_options(PROFILES["full"], seed=0))
    assert full.num_epochs == PROFILES["full"].num_epochs and full.validation_pool_size == 300
    assert "demo_text" not in available_methods()  # no demo plugin among the product's entry points


def test_cli_takes_data_and_names_a_missing_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from examples.demo.__main__ import app

    result = CliRunner().invoke(app, ["--data", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "demo")])
    assert result.exit_code != 0
    assert "no dataset" in result.output and "missing" in result.output


def test_stopping_a_server_that_is_not_there_does_nothing(tmp_path: Path) -> None:
    stop_stale_postgres(tmp_path / "pgdata")
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "postmaster.pid").write_text("999999999\n")
    stop_stale_postgres(tmp_path / "pgdata")


def test_outcome_prints_the_interval_beside_the_change_and_the_summary_keeps_it(tmp_path: Path) -> None:
    from rich.console import Console

    from embedding_studio.evaluation import BootstrapInterval
    from examples.demo.outcome import DemoResult, print_outcome

    interval = BootstrapInterval(mean_difference=0.0112, low=0.0031, high=0.0197, samples=10_000)
    demo = DemoResult(
        task_id="t1",
        batch_id=2,
        before={"ndcg@10": 0.30, "mrr@10": 0.40, "recall@100": 0.80},
        after={"ndcg@10": 0.3112, "mrr@10": 0.41, "recall@100": 0.80},
        report_path=tmp_path / "r.html",
        data_dir=tmp_path,
        mlflow_uri="sqlite:///x",
        api_url="http://127.0.0.1:1",
        blue_model_id="run1",
        sessions=1200,
        clicks=218,
        ndcg_change=interval,
        held_out_queries=170,
    )
    console = Console(record=True, width=200)
    print_outcome(console, demo, keep_serving=False)
    text = console.export_text()
    assert "Held-out queries (170)" in text and "95% interval" in text
    assert "[+0.0031, +0.0197]" in text
    assert "NDCG@10 change +0.0112, 95% interval [+0.0031, +0.0197]" in text and "above zero" in text
    summary = json.loads(json.dumps(demo.summary()))
    assert summary["ndcg@10_change"] == {
        "mean": 0.0112,
        "low": 0.0031,
        "high": 0.0197,
        "confidence": 0.95,
        "samples": 10_000,
    }
    assert summary["held_out_queries"] == 170
