import copy
import math
import random
from types import SimpleNamespace

import pytest
import torch

from embedding_studio.clickstream.types import FineTuningInput
from embedding_studio.finetuning.data import MAX_PART_CHUNKS, LengthBucketBatchSampler, TokenCache, length_chunks
from embedding_studio.finetuning.errors import NotEnoughDataError
from embedding_studio.finetuning.fine_tuner import EmbeddingsFineTuner, fit_fine_tuner, validation_interval
from embedding_studio.finetuning.params import FineTuningParams
from embedding_studio.finetuning.splitter import TrainTestSplitter
from embedding_studio.models import build_tiny_text_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The CI box runs several test processes on two cores: OpenMP threads spinning against each other
    make tiny matrix products 20-100x slower, so these tests compute on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _toy_world(seed: int = 0, item_count: int = 60, session_count: int = 200):
    """Each item carries a key word; a query names the key of the item its user clicks, plus noise.

    Learnable (match the shared token) but not solved by the random tiny model, and the split holds
    out whole queries, so improving on test needs the rule, not memorised pairs.
    """
    rng = random.Random(seed)
    keys = [f"key{number}" for number in range(item_count)]
    fillers = [f"fill{number}" for number in range(20)]
    items = {
        f"item{number}": [f"{keys[number]} {rng.choice(fillers)} {rng.choice(fillers)}"] for number in range(item_count)
    }
    inputs = []
    for number in range(session_count):
        target = rng.randrange(item_count)
        others = rng.sample([other for other in range(item_count) if other != target], 7)
        shown = [f"item{index}" for index in others + [target]]
        rng.shuffle(shown)
        inputs.append(
            FineTuningInput(
                session_id=f"s{number}",
                query=f"{keys[target]} {rng.choice(fillers)}",
                results=shown,
                ranks={item_id: rank for rank, item_id in enumerate(shown, 1)},
                events=[f"item{target}"],
                is_irrelevant=False,
            )
        )
    return items, inputs, keys + fillers


@pytest.mark.parametrize("loss", ["info_nce", "margin_ranking"])
def test_short_training_run_improves_validation_metrics(loss: str) -> None:
    items, inputs, vocabulary = _toy_world()
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(loss=loss, query_lr=1e-3, batch_size=16, num_epochs=2, seed=0)
    model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
    reported: list[tuple[int, dict[str, float]]] = []
    fine_tuner = EmbeddingsFineTuner.create(
        model, items, None, params, tracker_callback=lambda step, metrics: reported.append((step, dict(metrics)))
    )
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=2, test_each_n_inputs=80)

    before, after = result.baseline_metrics, result.best_metrics
    assert set(after) == {
        "val_loss",
        "val_mrr",
        "val_ndcg_at_10",
        "val_recall_at_10",
        "val_rerank_mrr",
        "val_rerank_ndcg_at_10",
        "val_rerank_recall_at_10",
    }
    assert after["val_ndcg_at_10"] > before["val_ndcg_at_10"] + 0.05
    assert after["val_mrr"] > before["val_mrr"]
    assert reported[0] == (0, before)
    assert [step for step, _ in reported] == sorted(step for step, _ in reported)
    assert len(result.history) == len(reported) - 1 >= 4  # ~160 train inputs / 80 per validation, 2 epochs
    # The weights left in the model are the kept validation's: searching the whole pool again agrees with it.
    assert _retrieval_ndcg(model, items, split.test) == pytest.approx(after["val_ndcg_at_10"], abs=1e-4)
    if result.weight_share == 1.0:
        assert _rerank_ndcg(model, items, split.test) == pytest.approx(after["val_rerank_ndcg_at_10"], abs=1e-4)


def _retrieval_ndcg(model, items, sessions) -> float:
    """NDCG@10 of each held-out query searched over every item, graded by the share of its sessions that clicked,
    computed from scratch with the encode path search uses."""
    from embedding_studio.metrics import ndcg_at_k

    sessions_of: dict[str, list] = {}
    for session in sessions:
        sessions_of.setdefault(session.query, []).append(session)
    item_ids = sorted(items)
    vectors = model.encode_items([items[item_id][0] for item_id in item_ids])
    values = []
    for query, group in sessions_of.items():
        relevance: dict[str, float] = {}
        for session in group:
            for click in session.events:
                relevance[click] = relevance.get(click, 0.0) + 1.0 / len(group)
        if not relevance:
            continue
        scores = vectors @ model.encode_queries([query])[0]
        order = sorted(range(len(item_ids)), key=lambda index: -float(scores[index]))
        values.append(ndcg_at_k([item_ids[index] for index in order], relevance))
    return sum(values) / len(values)


def _rerank_ndcg(model, items, sessions) -> float:
    from embedding_studio.metrics import ndcg_at_k

    values = []
    for session in sessions:
        query = model.encode_queries([session.query])[0]
        vectors = model.encode_items([items[item_id][0] for item_id in session.results])
        order = sorted(range(len(session.results)), key=lambda index: -float(vectors[index] @ query))
        values.append(ndcg_at_k([session.results[index] for index in order], {click: 1.0 for click in session.events}))
    return sum(values) / len(values)


def test_training_is_deterministic_for_a_seed() -> None:
    items, inputs, vocabulary = _toy_world(session_count=60)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(loss="margin_ranking", query_lr=1e-3, batch_size=16, num_epochs=1, seed=3)
    results = []
    for _ in range(2):
        fine_tuner = EmbeddingsFineTuner(build_tiny_text_model(seed=0, vocab=vocabulary), items, params=params)
        results.append(fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1).history)
    assert results[0] == results[1]
    assert not torch.are_deterministic_algorithms_enabled()  # the process-wide flag is given back


def test_an_item_scores_by_its_best_part() -> None:
    items = {"multi": ["boat water", "red shoe"], "single": ["red dress"], "other": ["city"]}
    sessions = [
        FineTuningInput("s1", "red shoe", ["multi", "single"], {"multi": 1, "single": 2}, ["multi"]),
        FineTuningInput("s2", "city", ["other", "single"], {"other": 1, "single": 2}, ["other"]),
    ]
    model = build_tiny_text_model(seed=1)
    fine_tuner = EmbeddingsFineTuner(model, items, params=FineTuningParams(batch_size=4))
    prepared = fine_tuner.preprocess_inputs(sessions[:1], sessions[1:])
    batch = next(iter(fine_tuner.data_module().val_dataloader()))
    validator = prepared.retrieval_validator
    similarities = validator.item_scores(validator.embed(model, torch.device("cpu")), batch["query_index"])
    query = model.encode_queries(["city"])[0]
    parts = model.encode_items(["boat water", "red shoe", "red dress", "city"]) @ query
    expected = sorted([max(parts[0], parts[1]), parts[2], parts[3]], reverse=True)  # the pool: every item
    assert sorted(similarities[0].tolist(), reverse=True) == pytest.approx(expected, abs=1e-5)

    train_batch = next(iter(fine_tuner.data_module().train_dataloader()))
    with torch.no_grad():
        train_similarities = fine_tuner.item_similarities(train_batch)
    query = model.encode_queries(["red shoe"])[0]
    multi = model.encode_items(items["multi"]) @ query
    single = model.encode_items(items["single"]) @ query
    assert sorted(train_similarities[0].tolist()) == pytest.approx(sorted([multi.max(), single.max()]), abs=1e-5)


def test_a_query_text_is_embedded_once_per_batch_however_many_sessions_carry_it() -> None:
    items = {"shoe": ["red shoe"], "dress": ["red dress"], "boat": ["boat"]}
    sessions = [
        FineTuningInput("s1", "red", ["shoe", "dress"], {"shoe": 1, "dress": 2}, ["shoe"]),
        FineTuningInput("s2", "boat", ["boat", "dress"], {"boat": 1, "dress": 2}, ["boat"]),
        FineTuningInput("s3", "red", ["dress", "shoe"], {"dress": 1, "shoe": 2}, ["dress"]),
        FineTuningInput("s4", "boat", ["boat"], {"boat": 1}, ["boat"]),
    ]
    model = build_tiny_text_model(seed=2)
    fine_tuner = EmbeddingsFineTuner(model, items, params=FineTuningParams(batch_size=8, negatives_per_query=0))
    fine_tuner.preprocess_inputs(sessions[:3], sessions[3:])
    batch = next(iter(fine_tuner.data_module().train_dataloader()))
    assert batch["query_tokens"]["input_ids"].shape[0] == 2  # "red" and "boat", for three rows
    assert batch["query_rows"].shape[0] == 3
    fine_tuner.eval()
    with torch.no_grad():
        similarities = fine_tuner.item_similarities(batch)
        # The same batch with every row's query padded and embedded on its own: the figures must not change.
        one_per_row = {key: value[batch["query_rows"]] for key, value in batch["query_tokens"].items()}
        expected = fine_tuner.item_similarities(
            {**batch, "query_tokens": one_per_row, "query_rows": torch.arange(batch["query_rows"].shape[0])}
        )
    assert torch.allclose(similarities, expected, atol=1e-6)


def test_chunks_cut_where_padding_costs_more_than_a_forward_call() -> None:
    assert length_chunks([5] * 40) == [40]  # one length: nothing to save
    assert length_chunks([10] * 7 + [120]) == [8]  # too few parts to cut
    lengths = sorted([10] * 20 + [120] * 20)
    assert length_chunks(lengths) == [20, 40]  # two groups: 20*10 + 20*120 + one call instead of 40*120
    ends = length_chunks(sorted(range(1, 81)))
    assert ends[-1] == 80 and len(ends) == MAX_PART_CHUNKS


def test_item_parts_are_padded_in_chunks_of_similar_length_and_score_as_one_batch() -> None:
    """Sorted and chunked parts must give every query-item similarity the one-padded-batch step gave."""
    rng = random.Random(0)
    words = [f"w{number}" for number in range(30)]
    items = {f"item{n}": [" ".join(rng.choices(words, k=rng.choice([2, 3, 20, 40])))] for n in range(40)}
    sessions = [
        FineTuningInput(f"s{n}", f"w{n}", shown, {shown[0]: 1, shown[1]: 2}, shown[:1])
        for n in range(0, 38, 2)
        for shown in [[f"item{n}", f"item{n + 1}"]]
    ]
    model = build_tiny_text_model(seed=2, vocab=words)
    params = FineTuningParams(batch_size=32, negatives_per_query=1, max_seq_length=64)
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    fine_tuner.preprocess_inputs(sessions[:-1], sessions[-1:])
    batch = next(iter(fine_tuner.data_module().train_dataloader()))
    chunks = batch["part_tokens"]
    assert len(chunks) > 1
    widths = [chunk["input_ids"].shape[1] for chunk in chunks]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    for chunk in chunks:  # each chunk padded to its own longest part, no wider
        assert int(chunk["attention_mask"].sum(dim=1).max()) == chunk["input_ids"].shape[1]
    assert sum(chunk["input_ids"].shape[0] for chunk in chunks) == batch["part_owner"].shape[0]
    fine_tuner.eval()
    with torch.no_grad():
        chunked = fine_tuner.item_similarities(batch)
        width = max(widths)
        one_batch = {
            key: torch.cat([torch.nn.functional.pad(chunk[key], (0, width - chunk[key].shape[1])) for chunk in chunks])
            for key in chunks[0]
        }
        expected = fine_tuner.item_similarities({**batch, "part_tokens": (one_batch,)})
    assert torch.allclose(chunked, expected, atol=1e-5)


def test_token_cache_pads_like_the_tokenizer() -> None:
    model = build_tiny_text_model(seed=0)
    texts = ["red shoe", "a much longer text about the red shoe and the blue dress", "city"]
    cache = TokenCache(model.tokenize_items, texts)
    expected = model.tokenize_items(texts)
    padded = cache.pad([0, 1, 2])
    for key, value in expected.items():
        assert torch.equal(padded[key], value), key
    assert cache.lengths.tolist() == expected["attention_mask"].sum(dim=1).tolist()


def test_separate_towers_get_their_own_learning_rate() -> None:
    items, inputs, vocabulary = _toy_world(session_count=30)
    model = build_tiny_text_model(seed=0, vocab=vocabulary).with_separate_towers()
    params = FineTuningParams(query_lr=1e-3, item_lr=1e-4, warmup_share=0.5)
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    fine_tuner._trainer = SimpleNamespace(estimated_stepping_batches=10)
    configured = fine_tuner.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert [group["initial_lr"] for group in optimizer.param_groups] == [1e-3, 1e-4]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 6)  # warm-up starts low
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_frozen_model_and_unlabelled_data_are_refused_clearly() -> None:
    items, inputs, vocabulary = _toy_world(session_count=30)
    fine_tuner = EmbeddingsFineTuner(build_tiny_text_model(vocab=vocabulary), items)
    unlabelled = [FineTuningInput(s.session_id, s.query, s.results, s.ranks, []) for s in inputs]
    with pytest.raises(NotEnoughDataError, match="training sessions"):
        fine_tuner.preprocess_inputs(unlabelled, inputs)
    frozen = EmbeddingsFineTuner(
        build_tiny_text_model(vocab=vocabulary), items, params=FineTuningParams(train_last_n_layers=0)
    )
    frozen._trainer = SimpleNamespace(estimated_stepping_batches=10)
    with pytest.raises(NotEnoughDataError, match="train_last_n_layers=0"):
        frozen.configure_optimizers()


def test_validation_interval_and_bucketed_batches() -> None:
    assert validation_interval(1.0, batch_size=16, batches_per_epoch=10) == 1.0
    assert validation_interval(0.25, batch_size=16, batches_per_epoch=10) == 0.25
    assert validation_interval(64, batch_size=16, batches_per_epoch=10) == 4
    assert validation_interval(10_000, batch_size=16, batches_per_epoch=10) == 10
    assert validation_interval(3, batch_size=16, batches_per_epoch=10) == 1
    with pytest.raises(ValueError, match="test_each_n_inputs"):
        validation_interval(0, batch_size=16, batches_per_epoch=10)

    lengths = [random.Random(0).randrange(100) for _ in range(100)]
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, seed=0, shuffle=True)
    first, second = list(sampler), list(sampler)
    assert sorted(index for batch in first for index in batch) == list(range(100))
    assert first != second  # a new order each epoch
    assert list(LengthBucketBatchSampler(lengths, batch_size=8, seed=0, shuffle=True)) == first
    spreads = [max(lengths[i] for i in batch) - min(lengths[i] for i in batch) for batch in first]
    assert sum(spreads) / len(spreads) < 20  # similar lengths share a batch


def test_training_truncates_to_max_seq_length_without_changing_the_saved_model() -> None:
    long_text = " ".join(["red shoe blue dress"] * 10)
    items = {"long": [long_text], "short": ["city"]}
    sessions = [
        FineTuningInput("s1", "red shoe", ["long", "short"], {"long": 1, "short": 2}, ["long"]),
        FineTuningInput("s2", "city", ["long", "short"], {"long": 1, "short": 2}, ["short"]),
    ]
    model = build_tiny_text_model(seed=0, max_seq_length=64)
    fine_tuner = EmbeddingsFineTuner(model, items, params=FineTuningParams(max_seq_length=12))
    prepared = fine_tuner.preprocess_inputs(sessions[:1], sessions[1:])
    assert max(prepared.train_collator.parts.lengths.tolist()) == 12
    assert model.max_seq_length == 64


def test_the_gpu_recipe_trains_on_cpu_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast + a fused AdamW + gradient clipping is what a GPU run does. Lightning refuses its own
    clipping for a fused optimizer under mixed precision (an H200 run failed so); CPU has both a fused AdamW and
    bf16 autocast, so the same combination runs here, and it must still learn."""
    import embedding_studio.finetuning.fine_tuner as fine_tuner_module

    built: list[torch.optim.Optimizer] = []

    class FusedAdamW(torch.optim.AdamW):  # what configure_optimizers builds on CUDA
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "fused": True})
            built.append(self)

    monkeypatch.setattr(fine_tuner_module, "training_precision", lambda on_gpu, images=False: "bf16-mixed")
    monkeypatch.setattr(torch.optim, "AdamW", FusedAdamW)
    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=1e-3, batch_size=16, num_epochs=2, seed=0)
    fine_tuner = EmbeddingsFineTuner(build_tiny_text_model(seed=0, dim=32, vocab=vocabulary), items, params=params)
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=2, test_each_n_inputs=48)
    assert built and all(optimizer.defaults["fused"] is True for optimizer in built)
    assert result.best_metrics["val_ndcg_at_10"] > result.baseline_metrics["val_ndcg_at_10"] + 0.02


def test_gradients_are_clipped_to_unit_norm_before_the_step() -> None:
    items, inputs, vocabulary = _toy_world(session_count=20)
    fine_tuner = EmbeddingsFineTuner(build_tiny_text_model(seed=0, vocab=vocabulary), items)
    for parameter in fine_tuner.parameters():
        parameter.grad = torch.full_like(parameter, 5.0)
    fine_tuner.on_before_optimizer_step(torch.optim.SGD(fine_tuner.parameters(), lr=0.1))
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in fine_tuner.parameters()]))
    assert total.item() == pytest.approx(1.0, rel=1e-4)


def test_similarities_keep_float32_resolution_under_bf16_autocast() -> None:
    items, inputs, vocabulary = _toy_world(session_count=40)
    fine_tuner = EmbeddingsFineTuner(build_tiny_text_model(seed=0, vocab=vocabulary), items)
    fine_tuner.preprocess_inputs(inputs[:30], inputs[30:])
    batch = next(iter(fine_tuner.data_module().train_dataloader()))
    with torch.no_grad(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        similarities = fine_tuner.item_similarities(batch)
    assert similarities.dtype == torch.float32
    scored = similarities[similarities > -2.0]
    assert (scored.to(torch.bfloat16).float() != scored).any()  # not bf16 values in a float32 tensor


def test_the_trained_model_stays_on_the_training_device() -> None:
    from embedding_studio.finetuning.fine_tuner import _training_device

    assert _training_device("gpu", 1) == torch.device("cuda", 0)
    assert _training_device("gpu", [2]) == torch.device("cuda", 2)
    assert _training_device("cpu", 1) == torch.device("cpu")


def test_a_weight_share_below_one_keeps_that_share_of_the_change() -> None:
    """W = W_0 + s (W_tuned - W_0), and the metrics the run reports are those of the interpolated weights."""
    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    trained = {}
    results = {}
    for share in (1.0, 0.5):
        params = FineTuningParams(
            query_lr=1e-3, batch_size=16, num_epochs=1, seed=0, fine_tuned_weight_share=share, choose_weight_share=False
        )
        torch.manual_seed(0)  # the same initial weights for both runs
        model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
        initial = {name: value.detach().clone() for name, value in model.query_tower.named_parameters()}
        fine_tuner = EmbeddingsFineTuner(model, items, params=params)
        results[share] = fit_fine_tuner(
            fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=48
        )
        trained[share] = {name: value.detach().clone() for name, value in model.query_tower.named_parameters()}
        if share == 0.5:
            assert _retrieval_ndcg(model, items, split.test) == pytest.approx(
                results[share].best_metrics["val_ndcg_at_10"], abs=1e-4
            )
    assert results[1.0].best_metrics != results[1.0].baseline_metrics  # training changed the weights
    for name, value in trained[0.5].items():
        torch.testing.assert_close(value, (initial[name] + trained[1.0][name]) / 2, rtol=1e-4, atol=1e-6)
    assert results[0.5].history == results[1.0].history  # the interpolated validation is not a training step


def test_the_weight_share_is_chosen_on_the_retrieval_validation() -> None:
    """Half and all of the change compete; the better one's weights and metrics are what is kept."""
    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=1e-3, batch_size=16, num_epochs=1, seed=0)
    model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=48)

    assert set(result.weight_share_validations) == {0.5}
    candidates = {share: metrics["val_ndcg_at_10"] for share, metrics in result.weight_share_validations.items()}
    fully_tuned = max(entry["val_ndcg_at_10"] for entry in result.history)
    candidates[1.0] = fully_tuned
    assert result.weight_share in candidates
    assert result.best_metrics["val_ndcg_at_10"] == pytest.approx(max(candidates.values()))
    assert _retrieval_ndcg(model, items, split.test) == pytest.approx(result.best_metrics["val_ndcg_at_10"], abs=1e-4)


def test_half_the_change_is_tried_even_when_the_trained_weights_validate_below_base() -> None:
    """A learning rate that wrecks the model: the fully trained weights lose to the untrained ones, the half-way mix
    is still validated, and whatever is kept validates at least as well as the untrained model."""
    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=0.5, batch_size=16, num_epochs=1, seed=0)
    model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=48)

    fully_trained = max(entry["val_ndcg_at_10"] for entry in result.history)
    assert fully_trained < result.baseline_metrics["val_ndcg_at_10"]
    assert set(result.weight_share_validations) == {0.5}
    assert result.weight_share in (0.0, 0.5)
    assert result.best_metrics["val_ndcg_at_10"] >= result.baseline_metrics["val_ndcg_at_10"]
    assert _retrieval_ndcg(model, items, split.test) == pytest.approx(result.best_metrics["val_ndcg_at_10"], abs=1e-4)


def test_the_chosen_recipe_is_refit_on_every_session() -> None:
    """After validation chose the checkpoint, the refit trains from the initial weights on train and held-out
    sessions for as many epochs' worth of steps, and the model it leaves beats the base one on queries neither fit
    saw; the reported metrics stay those of the validated fit."""
    items, inputs, vocabulary = _toy_world(session_count=240)
    outer = TrainTestSplitter(seed=1).split(inputs)
    split = TrainTestSplitter(seed=0).split(outer.train)
    params = FineTuningParams(
        query_lr=1e-3, batch_size=16, num_epochs=1, seed=0, choose_weight_share=False, refit_on_all_sessions=True
    )
    model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
    base_ndcg = _retrieval_ndcg(model, items, outer.test)
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=1.0)

    assert result.weight_share == 1.0
    validated_steps = int(result.history[-1]["step"])  # one validation, at the end of the epoch
    assert result.refit_steps == math.ceil(len(outer.train) / 16)  # one epoch over every session
    assert result.refit_steps > validated_steps
    assert result.best_metrics["val_ndcg_at_10"] == pytest.approx(result.history[-1]["val_ndcg_at_10"])
    assert _retrieval_ndcg(model, items, outer.test) > base_ndcg


def test_a_refit_run_later_from_its_plan_leaves_the_weights_the_fit_would_have() -> None:
    """A search refits only the run it chooses, after its trials: from the stored plan and a fresh copy of the start
    model, the refit must make the model the trial's own refit would have made (weight share included)."""
    from embedding_studio.finetuning.fine_tuner import RefitPlan, refit_on_all_sessions

    items, inputs, vocabulary = _toy_world(session_count=160)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=1e-3, batch_size=16, num_epochs=1, seed=0, refit_on_all_sessions=True)

    start = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)  # one start model, copied for each fit
    refit_now = copy.deepcopy(start)
    now = fit_fine_tuner(EmbeddingsFineTuner(refit_now, items, params=params), split.train, split.test, params)
    deferred_model = copy.deepcopy(start)
    deferred = fit_fine_tuner(
        EmbeddingsFineTuner(deferred_model, items, params=params),
        split.train,
        split.test,
        params,
        skip_refit=lambda metrics: "later",
    )
    assert now.refit_steps > 0 and deferred.refit_steps == 0 and deferred.refit_skipped == "later"
    assert deferred.refit_plan == now.refit_plan and deferred.refit_plan is not None
    plan = RefitPlan.from_json(deferred.refit_plan.to_json())

    refit_later = copy.deepcopy(start)
    steps = refit_on_all_sessions(EmbeddingsFineTuner(refit_later, items, params=params), split.train, split.test, plan)
    assert steps == now.refit_steps
    later_weights = dict(refit_later.query_tower.named_parameters())
    for name, value in refit_now.query_tower.named_parameters():
        torch.testing.assert_close(later_weights[name], value)
    with pytest.raises(ValueError, match="not a refit plan"):
        RefitPlan.from_json('{"validated_steps": 3}')


def test_nothing_is_refit_when_the_untrained_weights_are_kept() -> None:
    """A learning rate that wrecks the model (see above): the untrained weights win, and no refit overrides them."""
    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=0.5, batch_size=16, num_epochs=1, seed=0, refit_on_all_sessions=True)
    model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
    initial = {name: value.detach().clone() for name, value in model.query_tower.named_parameters()}
    fine_tuner = EmbeddingsFineTuner(model, items, params=params)
    result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=48)

    assert result.weight_share == 0.0
    assert result.refit_steps == 0
    for name, value in model.query_tower.named_parameters():
        torch.testing.assert_close(value, initial[name])


def test_a_known_baseline_is_not_validated_again_and_changes_nothing() -> None:
    """A search's later trials hand the first trial's untrained validation in: the fit skips that validation and
    trains, keeps and reports exactly what it would have after validating the same model itself."""
    import lightning.pytorch as pl
    from lightning.pytorch.trainer.states import TrainerFn

    class CountValidationsOutsideFitting(pl.Callback):
        def __init__(self) -> None:
            self.count = 0

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.count += trainer.state.fn != TrainerFn.FITTING

    items, inputs, vocabulary = _toy_world(session_count=80)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=1e-3, batch_size=16, num_epochs=1, seed=2, choose_weight_share=True)
    runs = []
    for known in (None, "first run's"):
        counter = CountValidationsOutsideFitting()
        model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
        reported: list[tuple[int, dict[str, float]]] = []
        result = fit_fine_tuner(
            EmbeddingsFineTuner(model, items, params=params),
            split.train,
            split.test,
            params,
            max_epochs=1,
            test_each_n_inputs=32,
            callbacks=[counter],
            on_validation_metrics=lambda step, metrics, into=reported: into.append((step, dict(metrics))),
            baseline_metrics=runs[0][0].baseline_metrics if known else None,
        )
        texts = [text for parts in items.values() for text in parts][:20]
        runs.append((result, counter.count, reported, model.encode_items(texts)))
    (first, first_outside, first_reported, first_vectors) = runs[0]
    (second, second_outside, second_reported, second_vectors) = runs[1]
    assert second_outside == first_outside - 1  # the weight shares are still validated, the baseline is not
    assert second.baseline_metrics == first.baseline_metrics
    assert second.history == first.history and second.best_metrics == first.best_metrics
    assert second.weight_share == first.weight_share
    assert second_reported == first_reported  # the baseline is still reported as step 0
    assert (second_vectors == first_vectors).all()  # the same model comes out


def test_the_weight_shares_of_now_score_as_after_fitting_and_change_nothing() -> None:
    """A pruner decides on what stopping would ship, so a validation during fitting can score the half-way mix of
    the weights of then: the figure is the one the share choice after fitting gets for the same checkpoint, and the
    fit around it trains, keeps and ships exactly what it would without."""
    import lightning.pytorch as pl
    from lightning.pytorch.trainer.states import TrainerFn

    class ScoreSharesAtEachValidation(pl.Callback):
        def __init__(self) -> None:
            self.figures: dict[int, dict[float, dict[str, float]]] = {}

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.state.fn != TrainerFn.FITTING:
                return
            before = pl_module.trainable_state_on_cpu()
            self.figures[pl_module.global_step] = pl_module.validate_weight_shares_now()
            after = pl_module.trainable_state_on_cpu()
            assert all(torch.equal(before[name], after[name]) for name in before)
            assert not pl_module.model.training  # still in the validation's eval mode

    items, inputs, vocabulary = _toy_world(session_count=120)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(query_lr=1e-3, batch_size=16, num_epochs=1, seed=0)
    runs = []
    for scoring in (None, ScoreSharesAtEachValidation()):
        model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
        fine_tuner = EmbeddingsFineTuner(model, items, params=params)
        result = fit_fine_tuner(
            fine_tuner,
            split.train,
            split.test,
            params,
            max_epochs=1,
            test_each_n_inputs=1.0,  # one validation, at the end: the checkpoint the share choice mixes
            callbacks=[scoring] if scoring is not None else [],
        )
        texts = [text for parts in items.values() for text in parts][:20]
        runs.append((result, model.encode_items(texts), fine_tuner))
    (plain, plain_vectors, _), (scored, scored_vectors, fine_tuner) = runs
    (figures,) = scoring.figures.values()
    assert set(figures) == {0.5}
    assert figures[0.5]["val_ndcg_at_10"] == pytest.approx(scored.weight_share_validations[0.5]["val_ndcg_at_10"])
    assert scored.history == plain.history and scored.best_metrics == plain.best_metrics
    assert scored.weight_share == plain.weight_share
    assert (scored_vectors == plain_vectors).all()
    assert fine_tuner.validate_weight_shares_now() == {}  # outside a fit there is no start to mix with


def test_training_precision_follows_the_hardware_unless_the_setting_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    import embedding_studio.finetuning.fine_tuner as fine_tuner_module
    from embedding_studio.config import reset_settings

    monkeypatch.setattr(fine_tuner_module, "cpu_has_native_bf16", lambda: True)
    reset_settings()
    try:
        assert fine_tuner_module.training_precision(on_gpu=False) == "bf16-mixed"
        assert fine_tuner_module.training_precision(on_gpu=False, images=True) == "32-true"  # not measured for CLIP
        monkeypatch.setattr(fine_tuner_module, "cpu_has_native_bf16", lambda: False)
        assert fine_tuner_module.training_precision(on_gpu=False) == "32-true"  # emulated bf16 is slower than fp32
        monkeypatch.setenv("EMBEDDING_STUDIO_TRAINING_PRECISION", "bf16")
        reset_settings()
        assert fine_tuner_module.training_precision(on_gpu=False, images=True) == "bf16-mixed"
        monkeypatch.setenv("EMBEDDING_STUDIO_TRAINING_PRECISION", "fp32")
        reset_settings()
        assert fine_tuner_module.training_precision(on_gpu=True) == "32-true"
    finally:
        monkeypatch.delenv("EMBEDDING_STUDIO_TRAINING_PRECISION", raising=False)
        reset_settings()


def test_training_without_dropout_trains_at_p_zero_and_gives_the_model_its_dropout_back() -> None:
    import lightning.pytorch as pl

    items, inputs, vocabulary = _toy_world(session_count=60)
    split = TrainTestSplitter(seed=0).split(inputs)

    class DropoutSeen(pl.Callback):
        def __init__(self) -> None:
            self.seen: set[float] = set()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_index) -> None:
            self.seen |= {module.p for module in pl_module.modules() if isinstance(module, torch.nn.Dropout)}

    for training_dropout in (False, True):
        params = FineTuningParams(
            query_lr=1e-3, batch_size=16, num_epochs=1, training_dropout=training_dropout, refit_on_all_sessions=True
        )
        model = build_tiny_text_model(seed=0, vocab=vocabulary)
        model_dropouts = {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}
        assert model_dropouts and 0.0 not in model_dropouts
        seen = DropoutSeen()
        fine_tuner = EmbeddingsFineTuner(model, items, params=params)
        fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, callbacks=[seen])
        assert seen.seen == ({0.0} if not training_dropout else model_dropouts)
        assert {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)} == model_dropouts


def test_a_bf16_training_forward_on_cpu_takes_the_math_attention_path() -> None:
    from torch.nn.functional import scaled_dot_product_attention

    from embedding_studio.finetuning.fine_tuner import _training_attention

    queries = torch.randn(2, 4, 8, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = scaled_dot_product_attention(queries, queries, queries).grad_fn
        with _training_attention(torch.device("cpu")):
            chosen = scaled_dot_product_attention(queries, queries, queries).grad_fn
    with _training_attention(torch.device("cpu")):
        float32 = scaled_dot_product_attention(queries, queries, queries).grad_fn
    assert "Flash" in type(fused).__name__  # what SDPA picks by itself: the fused kernel
    assert "Flash" not in type(chosen).__name__
    assert "Flash" in type(float32).__name__  # fp32 keeps the fused kernel, faster there


def test_a_fit_of_the_top_block_validates_from_the_frozen_blocks_states_with_the_same_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every validation and weight share of a fit that trains only its last block encodes the same pool: from the
    second on, the frozen block's states are reused, and every figure, the choice and the model are as without."""
    import embedding_studio.finetuning.retrieval_validation as retrieval_validation
    from embedding_studio.models.frozen_prefix import FrozenPrefixCache

    items, inputs, vocabulary = _toy_world(session_count=80)
    split = TrainTestSplitter(seed=0).split(inputs)
    params = FineTuningParams(
        query_lr=3e-3, batch_size=16, num_epochs=1, seed=2, train_last_n_layers=1, choose_weight_share=True
    )
    runs = []
    for max_bytes in (0, 1 << 30):
        monkeypatch.setattr(
            retrieval_validation, "FrozenPrefixCache", lambda budget=max_bytes: FrozenPrefixCache(budget)
        )
        model = build_tiny_text_model(seed=0, dim=32, vocab=vocabulary)
        fine_tuner = EmbeddingsFineTuner(model, items, params=params)
        result = fit_fine_tuner(fine_tuner, split.train, split.test, params, max_epochs=1, test_each_n_inputs=32)
        cache = fine_tuner.prepared.retrieval_validator.frozen_prefix_cache
        texts = [text for parts in items.values() for text in parts][:20]
        runs.append((result, cache.replayed_batches, model.encode_items(texts)))
    (without, without_replays, without_vectors), (reused, replays, vectors) = runs
    assert without_replays == 0 and replays > 0
    assert reused.baseline_metrics == without.baseline_metrics
    assert reused.history == without.history and reused.best_metrics == without.best_metrics
    assert reused.weight_share == without.weight_share
    assert (vectors == without_vectors).all()
