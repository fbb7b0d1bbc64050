"""The fast tokenizer: used only where it gives exactly what sentence-transformers' preprocess gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embedding_studio.models import build_tiny_text_model, load_embedding_model
from embedding_studio.models.tokenization import RustBatchTokenizer, batch_tokenizer, preprocess_features

CORPUS = Path(__file__).resolve().parents[2] / "data/dbpedia/corpus.jsonl"


def _varied_texts() -> list[str]:
    with CORPUS.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(200), handle, strict=False)]
    texts = [row["title"] for row in rows] + [row["text"] for row in rows]
    return texts + ["", " ", "Ünïcödé ÅNGSTRÖM 東京 🙂", "tab\tand\nnewline", "x" * 3000]


@pytest.fixture(scope="module")
def minilm():
    return load_embedding_model("all-MiniLM-L6-v2", device="cpu")


def _assert_same(tower, texts: list[str]) -> None:
    fast = batch_tokenizer(tower)
    assert isinstance(fast, RustBatchTokenizer)
    for start in range(0, len(texts), 37):
        chunk = texts[start : start + 37]
        expected = preprocess_features(tower, chunk)
        produced = fast(chunk)
        assert set(produced) == set(expected)
        for key, value in expected.items():
            assert torch.equal(produced[key], value), key


def test_fast_tokenizer_matches_preprocess_on_real_texts(minilm) -> None:
    _assert_same(minilm.query_tower, _varied_texts())


def test_fast_tokenizer_follows_max_seq_length(minilm) -> None:
    tower = minilm.query_tower
    previous = tower.max_seq_length
    try:
        tower.max_seq_length = 16
        _assert_same(tower, _varied_texts()[:80])
        assert batch_tokenizer(tower)(["word " * 100])["input_ids"].shape == (1, 16)
    finally:
        tower.max_seq_length = previous
    assert batch_tokenizer(tower).max_length == previous


def test_tiny_models_built_in_code_get_it_too() -> None:
    model = build_tiny_text_model(seed=0)
    _assert_same(model.query_tower, ["the cat sat", "", "unknown words here and there", "a"])


def test_a_tower_it_cannot_reproduce_keeps_preprocess(minilm) -> None:
    tower = build_tiny_text_model(seed=0).query_tower
    tower[0].do_lower_case = True  # sentence-transformers lowercases before tokenizing; the Rust core does not
    assert RustBatchTokenizer.for_tower(tower) is None
    tokenize = batch_tokenizer(tower)
    assert not isinstance(tokenize, RustBatchTokenizer)
    expected = preprocess_features(tower, ["MiXeD Case"])
    assert all(torch.equal(tokenize(["MiXeD Case"])[key], value) for key, value in expected.items())


def test_encoding_is_unchanged_by_the_fast_path(minilm) -> None:
    texts = _varied_texts()[:120]
    tower = minilm.query_tower
    features = preprocess_features(tower, texts[:8])
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(tower(features)["sentence_embedding"], dim=-1).numpy()
    np.testing.assert_allclose(minilm.encode_queries(texts[:8]), reference, atol=1e-5)
    batched = minilm.encode_items(texts, batch_size=16)
    one_by_one = np.stack([minilm.encode_items([text])[0] for text in texts[:10]])
    np.testing.assert_allclose(batched[:10], one_by_one, atol=1e-5)


def test_tokenizing_ahead_in_a_thread_gives_the_same_embeddings(minilm, monkeypatch: pytest.MonkeyPatch) -> None:
    import embedding_studio.models.text as text_module

    texts = _varied_texts()[:90]
    inline = minilm.encode_items(texts, batch_size=16)
    monkeypatch.setattr(text_module, "tokenize_ahead", lambda device: True)  # the GPU's path, on the CPU
    np.testing.assert_array_equal(minilm.encode_items(texts, batch_size=16), inline)
    assert minilm.encode_items(texts[:1], batch_size=16).shape == (1, 384)
