"""Reuse what a text tower's frozen lower blocks compute for inputs it has already seen.

A fit that trains only the last ``k`` transformer blocks (``train_last_n_layers``) leaves the embeddings and
the blocks below unchanged, yet every validation encodes the same candidate pool and held-out queries through
all of them again: on the default six-block model with ``k = 2`` two thirds of a validation's compute repeats
the first one's. :class:`FrozenPrefixCache` keeps, per token batch, the hidden states the frozen blocks gave,
and a later encode of the same batch runs only the blocks above, from those states.

Exact by construction: a batch is replayed only when its tokens are byte-for-byte the ones cached, the towers are
in inference mode (no dropout below the cut) and every frozen parameter still has the bytes it had when the
states were taken (a digest checked once per :meth:`FrozenPrefixCache.checked` scope). Anything else, trainable
embeddings, a tower whose blocks cannot be found, a changed weight, runs the whole tower as before.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from embedding_studio.models.errors import ModelError

#: How many bytes of hidden states a cache keeps (on the CPU): the default model's states for a validation pool
#: of about 500 long texts take about 120 MiB. Batches past the budget are encoded in full every time.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class FrozenPrefix:
    """The frozen lower part of one tower: its block stack, how many leading blocks are frozen, and a digest of
    every parameter those blocks and the token embeddings hold."""

    blocks: nn.ModuleList
    frozen_blocks: int
    digest: bytes


class FrozenPrefixCache:
    """Hidden states after a tower's frozen blocks, keyed by the frozen weights' digest and the batch's tokens.

    Use::

        cache = FrozenPrefixCache()
        with cache.checked([tower]):            # digests the frozen weights once
            embeddings = cache.encode(tower, features)   # the first time: the whole tower, states kept
            embeddings = cache.encode(tower, features)   # again: only the blocks above the frozen ones

    States live on the CPU, so a cache held between fits never holds accelerator memory.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.stored_bytes = 0
        self.replayed_batches = 0
        self._states: dict[tuple[bytes, bytes], Any] = {}
        self._prefixes: dict[int, FrozenPrefix | None] = {}

    @contextlib.contextmanager
    def checked(self, towers: Iterable[nn.Module]) -> Iterator[None]:
        """Within: :meth:`encode` may replay states for these towers. Entering digests each tower's frozen
        weights (a changed weight leaves its old states unused, then dropped); leaving forgets the towers."""
        prefixes = {id(tower): frozen_prefix(tower) for tower in towers}
        live = {prefix.digest for prefix in prefixes.values() if prefix is not None}
        for key in [key for key in self._states if key[0] not in live]:
            self.stored_bytes -= _state_bytes(self._states.pop(key))
        self._prefixes = prefixes
        try:
            yield
        finally:
            self._prefixes = {}

    def encode(self, tower: nn.Module, features: dict[str, Tensor]) -> Tensor:
        """``tower(features)["sentence_embedding"]``, through the frozen blocks only the first time this batch is
        seen in a :meth:`checked` scope of the same frozen weights."""
        prefix = self._prefixes.get(id(tower))
        if prefix is None:
            return tower(features)["sentence_embedding"]
        key = (prefix.digest, _batch_key(features))
        state = self._states.get(key)
        if state is None:
            return self._encode_keeping_state(tower, prefix, key, features)
        self.replayed_batches += 1
        device = _tower_device(tower)
        with _replaying(prefix, _to_device(state, device)):
            return tower(features)["sentence_embedding"]

    def _encode_keeping_state(
        self, tower: nn.Module, prefix: FrozenPrefix, key: tuple[bytes, bytes], features: dict[str, Tensor]
    ) -> Tensor:
        captured: list[Any] = []
        handle = prefix.blocks[prefix.frozen_blocks - 1].register_forward_hook(
            lambda module, inputs, output: captured.append(output)
        )
        try:
            embeddings = tower(features)["sentence_embedding"]
        finally:
            handle.remove()
        if captured:
            state = _to_device(captured[-1], "cpu")
            size = _state_bytes(state)
            if self.stored_bytes + size <= self.max_bytes:
                self._states[key] = state
                self.stored_bytes += size
        return embeddings


def frozen_prefix(tower: nn.Module) -> FrozenPrefix | None:
    """The frozen lower part of a sentence-transformers tower whose first module wraps a transformers encoder,
    or None when there is nothing to reuse: trainable token embeddings, no frozen leading block, a block or
    the embeddings in training mode (dropout), or an encoder whose block stack cannot be found."""
    from embedding_studio.models.text import embedding_modules, encoder_layers

    first = next(iter(tower.children()), None) if isinstance(tower, nn.Sequential) else None
    encoder = getattr(first, "auto_model", None)
    if not isinstance(encoder, nn.Module):
        return None
    try:
        blocks = encoder_layers(encoder)
        embeddings = embedding_modules(encoder)
    except (ModelError, AttributeError):
        return None
    if any(module.training or _trainable(module) for module in embeddings):
        return None
    frozen_blocks = 0
    for block in blocks:
        if block.training or _trainable(block):
            break
        frozen_blocks += 1
    if frozen_blocks == 0:
        return None
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{type(encoder).__qualname__}:{frozen_blocks}".encode())
    for module in [*embeddings, *list(blocks)[:frozen_blocks]]:
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(_tensor_bytes(tensor))
    return FrozenPrefix(blocks=blocks, frozen_blocks=frozen_blocks, digest=digest.digest())


def _trainable(module: nn.Module) -> bool:
    return any(parameter.requires_grad for parameter in module.parameters())


def _tensor_bytes(tensor: Tensor) -> Any:
    """The tensor's bytes as a buffer hashlib reads without a copy (any dtype, bf16 included)."""
    return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


def _batch_key(features: dict[str, Tensor]) -> bytes:
    """A digest of the batch's token tensors (names, shapes, values): equal only for the same padded batch."""
    digest = hashlib.blake2b(digest_size=20)
    for name in sorted(features):
        value = features[name]
        if isinstance(value, Tensor):
            digest.update(name.encode())
            digest.update(str(tuple(value.shape)).encode())
            digest.update(_tensor_bytes(value))
    return digest.digest()


def _tower_device(tower: nn.Module) -> Any:
    return next(tower.parameters()).device


def _to_device(state: Any, device: Any) -> Any:
    if isinstance(state, Tensor):
        return state.detach().to(device)
    if isinstance(state, tuple):
        return tuple(_to_device(part, device) for part in state)
    return state


def _state_bytes(state: Any) -> int:
    if isinstance(state, Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, tuple):
        return sum(_state_bytes(part) for part in state)
    return 0


class _PassThrough(nn.Module):
    """Stands in for a frozen block below the cut: hands the hidden states on untouched, in the block's output
    form (a tensor, or a one-tuple for encoders whose blocks return tuples)."""

    def __init__(self, as_tuple: bool) -> None:
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        return (hidden_states,) if self.as_tuple else hidden_states


class _Replay(nn.Module):
    """Stands in for the last frozen block: returns the states it gave this batch, whatever it is handed."""

    def __init__(self, state: Any) -> None:
        super().__init__()
        self.state = state

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.state


@contextlib.contextmanager
def _replaying(prefix: FrozenPrefix, state: Any) -> Iterator[None]:
    """Swap the frozen blocks for stand-ins for one forward pass; the real blocks are back however it ends."""
    originals = [prefix.blocks[index] for index in range(prefix.frozen_blocks)]
    as_tuple = isinstance(state, tuple)
    try:
        for index in range(prefix.frozen_blocks - 1):
            prefix.blocks[index] = _PassThrough(as_tuple)
        prefix.blocks[prefix.frozen_blocks - 1] = _Replay(state)
        yield
    finally:
        for index, block in enumerate(originals):
            prefix.blocks[index] = block
