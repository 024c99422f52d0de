"""Chunked response log-probs and entropy: the same numbers and gradients as the full logits,
with at most one chunk of vocabulary-sized tensors alive, forward and backward."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from azr.models import TinyModelSpec, load_model
from azr.rl.logprobs import response_scores


def _batch(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Three rows, prompts left-padded to end in one column, responses right-padded."""
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [5, 9, 2], [11, 4, 7]
    P, R = max(prompts), max(responses)
    ids = torch.zeros((3, P + R), dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.zeros((3, R), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        row = torch.randint(3, vocab, (p + r,), generator=g)
        ids[i, P - p : P + r] = row
        mask[i, P - p : P + r] = 1
        targets[i, :r] = row[p:]
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "targets": targets,
    }


def _loss_and_grads(
    model: Any, batch: dict[str, torch.Tensor], chunk_len: int, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    scores = response_scores(model, **batch, chunk_len=chunk_len, with_entropy=with_entropy)
    weights = torch.linspace(-1.0, 2.0, scores.logprobs.numel()).view_as(scores.logprobs)
    loss = (scores.logprobs * weights).sum()
    if scores.entropy is not None:
        loss = loss - 0.3 * scores.entropy.sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return scores.logprobs.detach(), scores.entropy, grads


@pytest.mark.parametrize("with_entropy", [False, True], ids=["no-entropy", "entropy"])
@pytest.mark.parametrize("chunk_len", [1, 3, 11, 64])
def test_chunked_scores_and_gradients_equal_the_full_logits(
    tiny_spec: TinyModelSpec, chunk_len: int, with_entropy: bool
) -> None:
    model, _ = load_model(None, spec=tiny_spec, seed=0)
    batch = _batch(model.config.vocab_size)
    ref_logp, ref_entropy, ref_grads = _loss_and_grads(model, batch, 0, with_entropy)
    logp, entropy, grads = _loss_and_grads(model, batch, chunk_len, with_entropy)

    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-5)
    if with_entropy:
        assert entropy is not None and ref_entropy is not None
        torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-5)
    else:
        assert entropy is None and ref_entropy is None
    assert grads.keys() == ref_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_scores_compose_with_gradient_checkpointing(tiny_spec: TinyModelSpec) -> None:
    model, _ = load_model(None, spec=tiny_spec, seed=0)
    batch = _batch(model.config.vocab_size, seed=1)
    _, _, ref_grads = _loss_and_grads(model, batch, 0, True)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    _, _, grads = _loss_and_grads(model, batch, 4, True)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)


class _LargestVocabTensor(TorchDispatchMode):
    """Records the most elements of any activation an op produces whose last dimension is
    ``V`` (the output head's weight gradient, ``(H, V)`` as a matmul writes it, is left out)."""

    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.weight_shape = (hidden, vocab)
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if (
                isinstance(t, torch.Tensor)
                and t.dim() >= 2
                and t.shape[-1] == self.vocab
                and tuple(t.shape) != self.weight_shape
            ):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("chunk_len", [0, 4])
def test_no_tensor_spans_the_whole_response_and_vocabulary(
    tiny_spec: TinyModelSpec, chunk_len: int
) -> None:
    model, _ = load_model(None, spec=tiny_spec, seed=0)
    V = model.config.vocab_size
    batch = _batch(V)
    b, R = batch["targets"].shape
    with _LargestVocabTensor(V, model.config.hidden_size) as seen:
        scores = response_scores(model, **batch, chunk_len=chunk_len, with_entropy=True)
        assert scores.entropy is not None
        (scores.logprobs.sum() + scores.entropy.sum()).backward()
    if chunk_len == 0:
        assert seen.largest >= b * R * V  # the reference path does build them
    else:
        assert 0 < seen.largest <= b * chunk_len * V


def test_models_with_logit_transforms_take_the_full_logits(tiny_spec: TinyModelSpec) -> None:
    # A soft-capped model's logits are not head(hidden): chunking over the head would be wrong,
    # so it falls back to the model's own logits, whose answer it then gives.
    model, _ = load_model(None, spec=tiny_spec, seed=0)
    batch = _batch(model.config.vocab_size)
    model.config.final_logit_softcapping = 30.0
    with torch.no_grad():
        chunked = response_scores(model, **batch, chunk_len=3, with_entropy=False).logprobs
        full = response_scores(model, **batch, chunk_len=0, with_entropy=False).logprobs
    torch.testing.assert_close(chunked, full, rtol=0, atol=0)
