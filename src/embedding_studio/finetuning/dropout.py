"""Dropout during a fit: switched off when the params ask, and on a CPU drawn from a cheaper random source.

Torch's CPU dropout draws its mask with ``bernoulli_``, one generator call per element: in the profile of a
bf16 MiniLM training step on 2 CPU cores it was a fifth of the step (``benchmarks/README.md``), more than the
optimizer and the loss together. :class:`SampledDropout` draws the same Bernoulli mask from 16 random bits an
element, four elements from each 64-bit draw of torch's generator, which is four to five times cheaper (a
``[48, 96, 384]`` mask: 3.7 ms against 10.9 ms), and keeps the mask as one byte an element for the backward.

What is learned does not change: each element is kept with probability ``q`` and scaled by ``1 / q``, where
``q = k / 65536`` and ``k = round((1 - p) * 65536)``, so ``q`` is within ``2 ** -17`` of ``1 - p`` and the
output is unbiased (``E[y] = x``) as torch's. Only the random stream differs: a seed still gives one fit.

Attention dropout is not an ``nn.Dropout`` call in Hugging Face models: the attention function receives its p
and, under SDPA, draws the mask inside torch's C++ math path. :func:`sampled_dropout_attention` is that
attention, in the training precision, with the sampled mask,
registered with Hugging Face's attention interface and switched on for the fit (:func:`training_dropout`).
Without dropout (validation, inference, p = 0) it hands the call to SDPA unchanged.

On a GPU torch's fused dropout kernels draw masks at memory speed: nothing is swapped there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

_MASK_BITS = 16
_MASK_VALUES = 1 << _MASK_BITS
SAMPLED_DROPOUT_ATTENTION = "embedding_studio_sampled_dropout"
"""The name under which :func:`sampled_dropout_attention` is registered with Hugging Face's attention interface."""


def _kept_values(p: float) -> int:
    """``k = round((1 - p) * 2**16)``: how many of an element's ``2**16`` bit patterns keep it."""
    return round((1.0 - p) * _MASK_VALUES)


def kept_share(p: float) -> float:
    """``q``, the probability that :class:`SampledDropout` keeps an element at dropout probability ``p``:
    ``round((1 - p) * 2**16) / 2**16``."""
    return _kept_values(p) / _MASK_VALUES


def sampled_keep_mask(shape: torch.Size, p: float, device: torch.device | None = None) -> Tensor:
    """A boolean mask of ``shape``, each element True with probability :func:`kept_share` ``(p)``, independently.

    An element's 16 bits are uniform over ``[-2**15, 2**15)``; it is kept when they are at least
    ``2**15 - k``, which ``k`` of the ``2**16`` values are. The bits come from torch's generator (seeded by the
    fit), 64 at a time."""
    count = math.prod(shape)
    draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    bits = draws.view(torch.int16)[:count].view(shape)
    return bits >= (_MASK_VALUES // 2 - _kept_values(p))


class _SampledDropoutFunction(torch.autograd.Function):
    """``y = x * m / q``, ``m ~ Bernoulli(q)`` per element; ``dL/dx = dL/dy * m / q``. The mask is saved as bools."""

    @staticmethod
    def forward(ctx: Any, inputs: Tensor, p: float) -> Tensor:
        keep = sampled_keep_mask(inputs.shape, p, inputs.device)
        scale = 1.0 / kept_share(p)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return inputs.mul(keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad_outputs[0].mul(keep).mul_(ctx.scale), None


def sampled_dropout(inputs: Tensor, p: float, training: bool = True) -> Tensor:
    """Dropout with the mask of :func:`sampled_keep_mask`; the identity outside training or at p = 0.

    Example::

        hidden = sampled_dropout(hidden, 0.1, training=module.training)
    """
    if not training or p == 0.0:
        return inputs
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return _SampledDropoutFunction.apply(inputs, p)


class SampledDropout(torch.nn.Dropout):
    """``nn.Dropout`` with :func:`sampled_dropout`'s mask; same ``p``, no state of its own, so a module can be
    switched to it and back by its class (:func:`training_dropout`)."""

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002  (nn.Dropout's own argument name)
        if self.inplace:
            return torch.nn.functional.dropout(input, self.p, self.training, self.inplace)
        return sampled_dropout(input, self.p, self.training)


def sampled_dropout_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Hugging Face attention function: ``softmax(q k^T * scaling + mask)``, :func:`sampled_dropout`, times ``v``.

    Inputs ``[batch, heads, length, head_dim]``; the mask is SDPA's (boolean, True where a key is attended, or
    additive floats); returns ``[batch, length, heads, head_dim]``. Precision as autocast leaves an eager
    attention: products and softmax in the inputs' dtype (bf16 under autocast), accumulated in fp32 by oneDNN and
    by torch's softmax. SDPA's math path upcasts bf16 inputs to fp32 throughout. A MiniLM training step (16
    queries and 40 passages of 128 tokens, forward, backward and AdamW; 2-core EPYC, interleaved medians) took
    2.00 s with torch's dropout and SDPA's math path, 1.62 s with this mask and fp32 attention, 1.39 s as here,
    the same as without any dropout (1.39 s).

    Anything but the plain case (no dropout, grouped keys, a position bias, causal attention without a mask, a
    softcap) is SDPA's own call."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (
        module.training
        and dropout > 0.0
        and getattr(module, "num_key_value_groups", 1) == 1
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not (attention_mask is None and kwargs.get("is_causal", getattr(module, "is_causal", False)))
    )
    if not plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    # [batch, heads, length, length]; masked in place (the product's backward reads q and k, not its output)
    scores = torch.matmul(query * scale, key.transpose(-2, -1))
    if attention_mask is None:
        pass
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
    else:
        scores = scores + attention_mask.to(scores.dtype)
    probabilities = torch.softmax(scores, dim=-1)  # a bf16 softmax is accumulated in fp32 by torch
    output = torch.matmul(sampled_dropout(probabilities, dropout), value)
    return output.transpose(1, 2).contiguous(), None


def _register_sampled_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    if SAMPLED_DROPOUT_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(SAMPLED_DROPOUT_ATTENTION, sampled_dropout_attention)
        AttentionMaskInterface.register(SAMPLED_DROPOUT_ATTENTION, sdpa_mask)


def _sdpa_models(model: torch.nn.Module) -> list[Any]:
    """The outermost Hugging Face models in ``model`` that run SDPA through the attention interface and can be
    switched to another attention function."""
    from transformers import PreTrainedModel

    found: list[Any] = []
    for module in model.modules():
        if not isinstance(module, PreTrainedModel) or any(module in outer.modules() for outer in found):
            continue
        if module.config._attn_implementation == "sdpa" and module._can_set_attn_implementation():
            found.append(module)
    return found


@contextlib.contextmanager
def training_dropout(model: torch.nn.Module, *, enabled: bool, device: torch.device) -> Iterator[None]:
    """The dropout of ``model`` for the block of a fit, as it was after it.

    ``enabled=False``: every ``nn.Dropout`` at p = 0 (``FineTuningParams.training_dropout``). Zeroing p rather
    than putting the modules in eval mode survives the ``train()`` Lightning calls after each validation, and
    Hugging Face attention reads its dropout off the module's p. Dropout a model applies as a plain float (CLIP's
    attention dropout, 0 by default) is left as it is.

    ``enabled=True`` on a CPU: plain ``nn.Dropout`` modules become :class:`SampledDropout` and SDPA attention
    becomes :func:`sampled_dropout_attention`; same p, cheaper masks. Elsewhere nothing changes."""
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.modules.dropout._DropoutNd)]
    if not enabled:
        kept = [module.p for module in dropouts]
        for module in dropouts:
            module.p = 0.0
        try:
            yield
        finally:
            for module, p in zip(dropouts, kept, strict=True):
                module.p = p
        return
    if device.type != "cpu":
        yield
        return
    swapped = [module for module in dropouts if type(module) is torch.nn.Dropout]
    _register_sampled_attention()
    attention_models = _sdpa_models(model)
    for module in swapped:
        module.__class__ = SampledDropout
    switched: list[Any] = []
    try:
        for hugging_face_model in attention_models:
            hugging_face_model.set_attn_implementation(SAMPLED_DROPOUT_ATTENTION)
            switched.append(hugging_face_model)
        yield
    finally:
        for hugging_face_model in switched:
            hugging_face_model.set_attn_implementation("sdpa")
        for module in swapped:
            module.__class__ = torch.nn.Dropout
