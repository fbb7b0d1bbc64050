from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedding_studio.evaluation import (
    DatasetError,
    load_beir_dataset,
    sampled_split,
    split_from_qrels,
    split_queries,
)

DEMO_DATA = Path(__file__).resolve().parents[2] / "data"  # the msmarco and dbpedia slices, outside the package


def write_dataset(folder: Path, qrels_header: bool = True, corpus_lines: list[str] | None = None) -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = corpus_lines or [
        json.dumps({"_id": "d1", "title": "Paris", "text": "capital of France"}),
        json.dumps({"_id": "d2", "title": "", "text": "a river in Germany"}),
        json.dumps({"_id": "d3", "text": "no title field at all"}),
    ]
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    queries = [{"_id": f"q{number}", "text": f"query {number}"} for number in range(1, 6)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(query) for query in queries) + "\n", encoding="utf-8")
    rows = ["q1\td1\t2", "q1\td2\t0", "q2\td2\t1", "q3\td3\t1", "q4\td1\t1", "q9\td1\t1"]
    header = ["query-id\tcorpus-id\tscore"] if qrels_header else []
    (folder / "qrels" / "test.tsv").write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    return folder


def test_loads_items_queries_and_graded_judgments(tmp_path: Path) -> None:
    dataset = load_beir_dataset(write_dataset(tmp_path / "set"))
    assert dataset.corpus["d1"] == ("Paris", "capital of France")
    assert dataset.corpus["d3"] == ("", "no title field at all")
    assert dataset.item_ids == ["d1", "d2", "d3"]
    assert dataset.item_text("d1") == "Paris. capital of France"
    assert dataset.item_text("d2") == "a river in Germany"
    assert dataset.queries["q5"] == "query 5"
    assert dataset.qrels["q1"] == {"d1": 2, "d2": 0}
    assert "q9" not in dataset.qrels  # judged query without text is dropped
    assert dataset.max_grade == 2
    assert dataset.judged_query_ids() == ["q1", "q2", "q3", "q4"]


def test_header_line_is_optional(tmp_path: Path) -> None:
    with_header = load_beir_dataset(write_dataset(tmp_path / "a", qrels_header=True))
    without_header = load_beir_dataset(write_dataset(tmp_path / "b", qrels_header=False))
    assert with_header.qrels == without_header.qrels


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "set")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match=r"qrels/test\.tsv does not exist"):
        load_beir_dataset(folder)
    with pytest.raises(DatasetError, match="does not exist"):
        load_beir_dataset(tmp_path / "nowhere")


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    lines = [json.dumps({"_id": "d1", "text": "fine"}), '{"_id": "d2", "text": broken', json.dumps({"_id": "d3"})]
    folder = write_dataset(tmp_path / "set", corpus_lines=lines)
    with pytest.raises(DatasetError, match=r"corpus\.jsonl, line 2: not valid JSON"):
        load_beir_dataset(folder)
    (folder / "corpus.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"corpus\.jsonl, line 2: missing field\(s\) text"):
        load_beir_dataset(folder)


def test_malformed_qrels_line_names_file_and_line(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "set")
    path = folder / "qrels" / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\thigh\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test\.tsv, line 3: score 'high' is not an integer"):
        load_beir_dataset(folder)
    path.write_text("q1\td1\t1\nq2 d2 1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test\.tsv, line 2: expected 3 tab-separated columns"):
        load_beir_dataset(folder)


def test_split_is_disjoint_deterministic_and_keeps_the_share() -> None:
    dataset = load_beir_dataset(DEMO_DATA / "msmarco")
    judged = set(dataset.judged_query_ids())
    split = split_queries(dataset, test_share=0.2, seed=7)
    assert set(split.train) | set(split.test) == judged
    assert not set(split.train) & set(split.test)
    assert len(split.test) == round(len(judged) * 0.2)
    assert split_queries(dataset, test_share=0.2, seed=7) == split
    assert split_queries(dataset, test_share=0.2, seed=8).test != split.test


def test_split_rejects_bad_share_and_tiny_sets(tmp_path: Path) -> None:
    dataset = load_beir_dataset(write_dataset(tmp_path / "set"))
    with pytest.raises(ValueError, match="test_share"):
        split_queries(dataset, test_share=1.0)
    split = split_queries(dataset, test_share=0.9)
    assert len(split.train) >= 1 and len(split.test) >= 1
    dataset.qrels = {"q1": {"d1": 1}}
    with pytest.raises(DatasetError, match="at least 2"):
        split_queries(dataset)


def test_shipped_datasets_load() -> None:
    for name in ("msmarco", "dbpedia"):
        dataset = load_beir_dataset(DEMO_DATA / name)
        assert len(dataset.corpus) == 5000
        assert len(dataset.queries) == 50
        assert len(dataset.judged_query_ids()) >= 40


def write_dataset_with_train_split(folder: Path) -> Path:
    """write_dataset plus qrels/train.tsv judging q5 (train only), q1 (also in test) and q7 (no query text)."""
    write_dataset(folder)
    rows = ["query-id\tcorpus-id\tscore", "q5\td2\t1", "q5\td3\t3", "q1\td3\t1", "q7\td1\t1"]
    (folder / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_train_judgments_are_read_next_to_the_test_ones(tmp_path: Path) -> None:
    dataset = load_beir_dataset(write_dataset_with_train_split(tmp_path / "set"))
    assert dataset.has_train_split
    assert dataset.qrels["q1"] == {"d1": 2, "d2": 0}  # scoring still reads the test judgments
    assert dataset.train_qrels == {"q5": {"d2": 1, "d3": 3}, "q1": {"d3": 1}}  # q7 has no text: dropped
    assert dataset.training_judgments("q5") == {"d2": 1, "d3": 3}
    assert dataset.max_grade == 3  # the scale covers the training judgments too
    without = load_beir_dataset(write_dataset(tmp_path / "plain"))
    assert not without.has_train_split and without.train_qrels == {}
    assert without.training_judgments("q1") == {"d1": 2, "d2": 0}  # a random split's training queries use qrels
    assert load_beir_dataset(tmp_path / "set", split="train").train_qrels == {}


def test_split_from_qrels_uses_the_dataset_split_and_never_trains_on_a_test_query(tmp_path: Path) -> None:
    dataset = load_beir_dataset(write_dataset_with_train_split(tmp_path / "set"))
    split = split_from_qrels(dataset)
    assert split.test == ["q1", "q2", "q3", "q4"]
    assert split.train == ["q5"]  # q1 is judged in both files: test only
    plain = load_beir_dataset(write_dataset(tmp_path / "plain"))
    with pytest.raises(DatasetError, match=r"no qrels/train\.tsv"):
        split_from_qrels(plain)
    dataset.train_qrels = {"q1": {"d3": 1}}
    with pytest.raises(DatasetError, match="0 training and 4 test"):
        split_from_qrels(dataset)


def test_a_sampled_split_follows_the_dataset_split_and_cuts_each_side_reproducibly(tmp_path: Path) -> None:
    own = load_beir_dataset(write_dataset_with_train_split(tmp_path / "set"))
    assert sampled_split(own) == split_from_qrels(own)
    cut = sampled_split(own, seed=3, max_test_queries=2)
    assert cut.train == ["q5"] and len(cut.test) == 2 and set(cut.test) <= {"q1", "q2", "q3", "q4"}
    assert cut == sampled_split(own, seed=3, max_test_queries=2)
    assert cut.test == sorted(cut.test)
    plain = load_beir_dataset(write_dataset(tmp_path / "plain"))
    assert sampled_split(plain, test_share=0.25, seed=1) == split_queries(plain, test_share=0.25, seed=1)
    capped = sampled_split(plain, test_share=0.25, seed=1, max_train_queries=1)
    assert len(capped.train) == 1 and capped.test == split_queries(plain, test_share=0.25, seed=1).test


def test_relevant_first_keeps_items_relevant_to_training_queries(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "set")
    corpus = [json.dumps({"_id": f"d{number}", "text": f"item {number}"}) for number in range(1, 31)]
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (folder / "qrels" / "train.tsv").write_text("q5\td20\t1\nq5\td25\t1\nq5\td26\t0\n", encoding="utf-8")
    dataset = load_beir_dataset(folder)
    for seed in range(5):
        cut = dataset.relevant_first(6, seed=seed)
        assert len(cut.corpus) == 6
        # test-relevant d1, d2, d3 and train-relevant d20, d25 always stay; d26 (grade 0) is not relevant
        assert {"d1", "d2", "d3", "d20", "d25"} <= set(cut.corpus)
        assert cut.train_qrels == dataset.train_qrels
    assert split_from_qrels(dataset.relevant_first(6)).train == ["q5"]
