"""The frozen-prefix cache: a validation of a fit that trains only its top blocks reuses what the frozen blocks
gave the same token batches, and must embed exactly as the whole tower does."""

import pytest
import torch

from embedding_studio.models import build_tiny_text_model
from embedding_studio.models.frozen_prefix import FrozenPrefixCache, frozen_prefix

TEXTS = ["red shoe for running", "cheap laptop", "a blue shirt with long sleeves and a pocket", "water"]


class CountCalls:
    """Counts the forward calls of one module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._count)

    def _count(self, module: torch.nn.Module, inputs: object, output: object) -> None:
        self.calls += 1


def _model_training_its_last_block():
    model = build_tiny_text_model(seed=0, dim=32)
    model.set_trainable_layers(1)
    model.eval()
    return model


def _blocks(tower):
    return tower[0].auto_model.encoder.layer


@torch.no_grad()
def _items(model, cache=None):
    tokens = model.tokenize_items(TEXTS)
    if cache is None:
        return model.forward_items(tokens)
    with model.reusing_frozen_prefix(cache):
        return model.forward_items(tokens)


def test_a_seen_batch_is_embedded_exactly_as_by_the_whole_tower_without_running_the_frozen_block() -> None:
    model = _model_training_its_last_block()
    frozen_block = CountCalls(_blocks(model.query_tower)[0])
    cache = FrozenPrefixCache()
    expected = _items(model)
    assert frozen_block.calls == 1

    first = _items(model, cache)
    assert frozen_block.calls == 2 and cache.replayed_batches == 0 and cache.stored_bytes > 0
    again = _items(model, cache)
    assert frozen_block.calls == 2 and cache.replayed_batches == 1  # the frozen block did not run
    assert torch.equal(first, expected) and torch.equal(again, expected)
    assert isinstance(_blocks(model.query_tower)[0], type(_blocks(model.query_tower)[1]))  # the real block is back


def test_what_the_trained_block_learns_shows_in_a_replayed_batch() -> None:
    model = _model_training_its_last_block()
    cache = FrozenPrefixCache()
    before = _items(model, cache)
    with torch.no_grad():
        for parameter in _blocks(model.query_tower)[1].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    after = _items(model, cache)
    assert cache.replayed_batches == 1
    assert not torch.equal(after, before)
    assert torch.equal(after, _items(model))


def test_a_changed_frozen_weight_is_noticed_and_the_batch_encoded_whole() -> None:
    model = _model_training_its_last_block()
    cache = FrozenPrefixCache()
    _items(model, cache)
    with torch.no_grad():
        next(_blocks(model.query_tower)[0].parameters()).add_(0.05)
    changed = _items(model, cache)
    assert cache.replayed_batches == 0
    assert torch.equal(changed, _items(model))


def test_nothing_is_reused_when_every_block_trains_the_embeddings_train_or_dropout_is_on() -> None:
    model = build_tiny_text_model(seed=0, dim=32)
    model.eval()
    assert frozen_prefix(model.query_tower) is None  # every block trains
    model.set_trainable_layers(1, train_embeddings=True)
    assert frozen_prefix(model.query_tower) is None  # the embeddings below the blocks train
    model.set_trainable_layers(1)
    assert frozen_prefix(model.query_tower) is not None
    model.train()
    assert frozen_prefix(model.query_tower) is None  # dropout below the cut makes every pass different
    cache = FrozenPrefixCache()
    with torch.no_grad(), model.reusing_frozen_prefix(cache):
        model.forward_items(model.tokenize_items(TEXTS))
    assert cache.stored_bytes == 0


def test_past_its_byte_budget_the_cache_keeps_nothing_and_embeds_the_same() -> None:
    model = _model_training_its_last_block()
    cache = FrozenPrefixCache(max_bytes=0)
    expected = _items(model)
    assert torch.equal(_items(model, cache), expected)
    assert torch.equal(_items(model, cache), expected)
    assert cache.stored_bytes == 0 and cache.replayed_batches == 0
    with pytest.raises(ValueError, match="max_bytes"):
        FrozenPrefixCache(max_bytes=-1)


def test_separate_towers_with_the_same_frozen_blocks_share_their_states() -> None:
    model = build_tiny_text_model(seed=0, dim=32).with_separate_towers()
    model.set_trainable_layers(1)
    model.eval()
    with torch.no_grad():
        for parameter in _blocks(model.item_tower)[1].parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    tokens = model.tokenize_items(TEXTS)
    with torch.no_grad():
        expected_queries, expected_items = model.forward_queries(tokens), model.forward_items(tokens)
    cache = FrozenPrefixCache()
    with torch.no_grad(), model.reusing_frozen_prefix(cache):
        queries, items = model.forward_queries(tokens), model.forward_items(tokens)
    assert cache.replayed_batches == 1  # the second tower reused the first one's states: the frozen blocks agree
    assert torch.equal(queries, expected_queries) and torch.equal(items, expected_items)
    assert not torch.equal(queries, items)
