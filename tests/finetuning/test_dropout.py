import pytest
import torch
from torch.nn.functional import scaled_dot_product_attention

import embedding_studio.finetuning.dropout as dropout_module
from embedding_studio.finetuning.dropout import (
    SAMPLED_DROPOUT_ATTENTION,
    SampledDropout,
    kept_share,
    sampled_dropout,
    sampled_dropout_attention,
    sampled_keep_mask,
    training_dropout,
)
from embedding_studio.models import build_tiny_text_model

CPU = torch.device("cpu")


def _hugging_face_model(model: torch.nn.Module):
    from transformers import PreTrainedModel

    return next(module for module in model.modules() if isinstance(module, PreTrainedModel))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_mask_keeps_each_element_with_probability_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    keep = sampled_keep_mask(torch.Size([400, 2500]), p)
    assert keep.dtype == torch.bool and keep.shape == (400, 2500)
    share = keep.float().mean().item()
    standard_error = (kept_share(p) * (1 - kept_share(p)) / keep.numel()) ** 0.5
    assert abs(share - (1 - p)) < 5 * standard_error
    assert abs(kept_share(p) - (1 - p)) <= 2**-17
    # neither rows nor columns (the 4 lanes of one 64-bit draw) lean
    assert keep.float().mean(dim=0).std().item() < 5 * (p * (1 - p) / 400) ** 0.5
    lanes = keep.reshape(-1, 4).float().mean(dim=0)
    assert (lanes - (1 - p)).abs().max().item() < 5 * (p * (1 - p) / (keep.numel() / 4)) ** 0.5


def test_the_mask_follows_the_seed_and_an_odd_size() -> None:
    torch.manual_seed(3)
    first = sampled_keep_mask(torch.Size([7, 3]), 0.3)
    torch.manual_seed(3)
    assert torch.equal(first, sampled_keep_mask(torch.Size([7, 3]), 0.3))


def test_sampled_dropout_is_unbiased_and_its_gradient_is_the_mask_over_q() -> None:
    torch.manual_seed(0)
    inputs = (torch.rand(200, 500) + 0.5).requires_grad_()
    outputs = sampled_dropout(inputs, 0.1)
    kept = outputs != 0
    scale = 1 / kept_share(0.1)
    assert torch.allclose(outputs[kept], inputs[kept] * scale)
    assert abs(outputs.mean().item() - inputs.mean().item()) < 0.01
    outputs.sum().backward()
    assert inputs.grad is not None
    assert torch.allclose(inputs.grad, kept.float() * scale)
    assert sampled_dropout(inputs, 0.1, training=False) is inputs
    assert sampled_dropout(inputs, 0.0) is inputs
    with pytest.raises(ValueError, match="dropout probability"):
        sampled_dropout(inputs, 1.0)


def test_sampled_dropout_keeps_bf16() -> None:
    inputs = torch.randn(8, 16, dtype=torch.bfloat16, requires_grad=True)
    outputs = sampled_dropout(inputs, 0.2)
    outputs.float().sum().backward()
    assert outputs.dtype == torch.bfloat16 and inputs.grad is not None and inputs.grad.dtype == torch.bfloat16


def _attention_inputs(mask_dtype: torch.dtype):
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4) for _ in range(3))
    attended = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    attended[1, :, :, 3:] = False  # the second text's last two tokens are padding
    if mask_dtype == torch.bool:
        return query, key, value, attended
    return query, key, value, torch.zeros(2, 1, 5, 5).masked_fill(~attended, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])
def test_the_attention_is_sdpa_with_the_sampled_mask(mask_dtype: torch.dtype, monkeypatch) -> None:
    query, key, value, mask = _attention_inputs(mask_dtype)
    module = torch.nn.Module().train()
    expected = scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)
    # with every element kept, the math is SDPA's
    monkeypatch.setattr(dropout_module, "sampled_keep_mask", lambda shape, p, device=None: torch.ones(shape).bool())
    output, weights = sampled_dropout_attention(module, query, key, value, mask, dropout=0.25, scaling=0.5)
    scaled = scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.5).transpose(1, 2)
    assert weights is None and output.shape == (2, 5, 3, 4)
    assert torch.allclose(output, scaled / kept_share(0.25), atol=1e-6)
    # no dropout (Hugging Face passes 0 outside training): SDPA itself
    output, _ = sampled_dropout_attention(module, query, key, value, mask, dropout=0.0)
    assert torch.allclose(output, expected, atol=1e-6)


def test_the_attention_drops_attention_probabilities_under_bf16_autocast() -> None:
    query, key, value, mask = _attention_inputs(torch.bool)
    module = torch.nn.Module().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = sampled_dropout_attention(
            module, query.bfloat16(), key.bfloat16(), value.bfloat16(), mask, dropout=0.5
        )
    reference = scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)
    assert output.dtype == torch.bfloat16
    assert not torch.allclose(output.float(), reference, atol=1e-2)  # half the probabilities dropped


def test_the_fit_context_swaps_dropout_on_cpu_and_gives_everything_back(monkeypatch) -> None:
    dropped_shapes: list[tuple[int, ...]] = []

    def recorded(inputs: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
        dropped_shapes.append(tuple(inputs.shape))
        return dropout_module._SampledDropoutFunction.apply(inputs, p) if training and p else inputs

    monkeypatch.setattr(dropout_module, "sampled_dropout", recorded)
    model = build_tiny_text_model(seed=0)
    encoder = _hugging_face_model(model)
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    probabilities = [module.p for module in dropouts]
    assert dropouts and encoder.config._attn_implementation == "sdpa"
    tokens = model.tokenize_items(["a b c", "a"])
    model.eval()
    with torch.no_grad():
        eval_before = model.forward_items(tokens)

    with training_dropout(model, enabled=True, device=CPU):
        assert all(type(module) is SampledDropout for module in dropouts)
        assert [module.p for module in dropouts] == probabilities
        assert encoder.config._attn_implementation == SAMPLED_DROPOUT_ATTENTION
        with torch.no_grad():
            assert torch.allclose(model.forward_items(tokens), eval_before, atol=1e-6)  # validation
        model.train()
        torch.manual_seed(1)
        first = model.forward_items(tokens)
        first.sum().backward()
        torch.manual_seed(1)
        assert torch.equal(first, model.forward_items(tokens))  # a seed gives one fit
        assert not torch.allclose(first, eval_before, atol=1e-4)  # dropout did act
        # hidden states [texts, tokens, dim] and attention probabilities [texts, heads, tokens, tokens] both
        assert {len(shape) for shape in dropped_shapes} == {3, 4}
        model.eval()

    assert all(type(module) is torch.nn.Dropout for module in dropouts)
    assert encoder.config._attn_implementation == "sdpa"
    with torch.no_grad():
        assert torch.allclose(model.forward_items(tokens), eval_before, atol=1e-6)


def test_the_fit_context_switches_dropout_off_or_leaves_a_gpu_model_alone() -> None:
    model = build_tiny_text_model(seed=0)
    encoder = _hugging_face_model(model)
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    probabilities = [module.p for module in dropouts]
    with training_dropout(model, enabled=False, device=CPU):
        assert {module.p for module in dropouts} == {0.0}
    assert [module.p for module in dropouts] == probabilities
    with training_dropout(model, enabled=True, device=torch.device("cuda")):  # nothing moves: only a name
        assert all(type(module) is torch.nn.Dropout for module in dropouts)
        assert encoder.config._attn_implementation == "sdpa"


def test_an_error_inside_the_fit_still_gives_the_model_back() -> None:
    model = build_tiny_text_model(seed=0)
    encoder = _hugging_face_model(model)
    with pytest.raises(RuntimeError, match="boom"), training_dropout(model, enabled=True, device=CPU):
        raise RuntimeError("boom")
    assert all(type(module) is torch.nn.Dropout for module in model.modules() if isinstance(module, torch.nn.Dropout))
    assert encoder.config._attn_implementation == "sdpa"
