"""The in-process torch backend on the tiny model: sampling controls, stopping, weight sync."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import torch
import transformers
import trio

from azr.generation import (
    BackendClosed,
    CheckpointWeights,
    Completion,
    DistributedWeights,
    GenerationBackend,
    InProcessWeights,
    InvalidRequest,
    InvalidSamplingParams,
    SamplingParams,
    TorchBackend,
    UnsupportedWeightSource,
    WeightSource,
    WeightSyncError,
)
from azr.models import TinyModelSpec, Tokenizer, load_model, save_model

torch.set_num_threads(2)  # two cores: more threads only add contention for tiny tensors
transformers.utils.logging.disable_progress_bar()

SPEC = TinyModelSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
)
PROMPTS = ["<|user|>Hi<|assistant|>", "a", "<|system|>longer prompt with more bytes<|user|>x"]


def _backend(seed: int = 0, **kwargs: object) -> TorchBackend:
    model, tok = load_model(None, spec=SPEC, seed=seed)
    return TorchBackend(model, tok, device="cpu", **kwargs)


def _generate(
    backend: TorchBackend, params: SamplingParams, prompts: list[str] = PROMPTS
) -> list[list[Completion]]:
    return trio.run(backend.generate, prompts, params)


def _bias_hook(
    backend: TorchBackend, token: int, value: float
) -> torch.utils.hooks.RemovableHandle:
    """Add ``value`` to one token's logit, a real change to the model's output distribution."""
    bias = torch.zeros(len(backend.tokenizer))
    bias[token] = value
    return backend._model.lm_head.register_forward_hook(lambda _m, _i, out: out + bias)


def test_satisfies_the_protocol_and_shapes() -> None:
    backend: GenerationBackend = _backend(weight_version=7)
    params = SamplingParams(n=3, max_new_tokens=5, seed=0)
    result = trio.run(backend.generate, PROMPTS, params)
    assert [len(r) for r in result] == [3, 3, 3]
    for comps in result:
        for c in comps:
            assert len(c.token_ids) == len(c.logprobs) <= 5
            assert all(lp <= 0 for lp in c.logprobs)
            assert c.weight_version == 7
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert len(c.token_ids) == 5
    # Completions are wire messages.
    wire = msgspec.msgpack.encode(result[0][0])
    assert msgspec.msgpack.decode(wire, type=Completion) == result[0][0]


def test_seed_reproduces_and_different_seeds_differ() -> None:
    backend = _backend()
    a = _generate(backend, SamplingParams(n=2, max_new_tokens=8, seed=5))
    b = _generate(backend, SamplingParams(n=2, max_new_tokens=8, seed=5))
    c = _generate(backend, SamplingParams(n=2, max_new_tokens=8, seed=6))
    assert a == b
    assert a != c


def test_batching_and_left_padding_do_not_change_results() -> None:
    backend = _backend()
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    together = _generate(backend, greedy)
    backend.max_batch_size = 1
    alone = _generate(backend, greedy)
    for x, y in zip(together, alone, strict=True):
        assert x[0].token_ids == y[0].token_ids
        assert max(abs(p - q) for p, q in zip(x[0].logprobs, y[0].logprobs, strict=True)) < 1e-4


def test_rows_that_finish_early_leave_the_others_unchanged() -> None:
    # The random tiny model greedily repeats the prompt's last byte, so "aaa" stops the first
    # prompt after three tokens while the others run on: the finished row is dropped from the
    # KV cache mid-batch, which must not disturb the rows that continue.
    backend = _backend()
    prompts = ["a", "b", "<|system|>hello"]
    params = SamplingParams(temperature=0.0, max_new_tokens=10, stop=("aaa",))
    together = _generate(backend, params, prompts)
    assert together[0][0].finish_reason == "stop"
    assert together[0][0].token_ids == (97, 97, 97)
    assert [r[0].finish_reason for r in together[1:]] == ["length", "length"]
    backend.max_batch_size = 1
    alone = _generate(backend, params, prompts)
    for x, y in zip(together, alone, strict=True):
        assert x[0].token_ids == y[0].token_ids
        assert max(abs(p - q) for p, q in zip(x[0].logprobs, y[0].logprobs, strict=True)) < 1e-4


def test_greedy_and_tiny_top_p_pick_the_most_likely_token() -> None:
    backend = _backend()
    greedy = _generate(backend, SamplingParams(temperature=0.0, max_new_tokens=6, seed=1))
    nucleus = _generate(backend, SamplingParams(top_p=1e-6, max_new_tokens=6, seed=2))
    assert [c[0].token_ids for c in greedy] == [c[0].token_ids for c in nucleus]
    # With top_p that small only the arg-max survives, so n samples are identical.
    same = _generate(backend, SamplingParams(n=4, top_p=1e-6, max_new_tokens=6, seed=3))
    assert all(len({c.token_ids for c in comps}) == 1 for comps in same)


def test_temperature_sharpens_sampling() -> None:
    backend = _backend()
    prompts = ["<|user|>Hi<|assistant|>"]
    hot = _generate(
        backend, SamplingParams(n=64, temperature=1.0, max_new_tokens=1, seed=0), prompts
    )
    cold = _generate(
        backend, SamplingParams(n=64, temperature=0.05, max_new_tokens=1, seed=0), prompts
    )
    assert len({c.token_ids for c in cold[0]}) < len({c.token_ids for c in hot[0]})


def test_stop_string_cuts_the_text_and_keeps_the_stopping_token() -> None:
    backend = _backend()
    # Seeded sampling consumes the same random numbers with or without the stop string, so the
    # stopped completion is a prefix of the free one.
    params = SamplingParams(max_new_tokens=24, seed=0)
    free = _generate(backend, params)[0][0]
    tok = backend.tokenizer
    # Pick the first printable ASCII token after the first position as the stop string.
    k = next(i for i, t in enumerate(free.token_ids) if 33 <= t < 127 and i > 0)
    stop = chr(free.token_ids[k])
    stopped = _generate(backend, msgspec.structs.replace(params, stop=(stop, "never-seen")))
    c = stopped[0][0]
    assert c.finish_reason == "stop"
    full_text = tok.decode(free.token_ids)
    assert c.text == full_text[: full_text.index(stop)]
    assert stop not in c.text
    assert c.token_ids == free.token_ids[: len(c.token_ids)]
    assert c.logprobs == free.logprobs[: len(c.token_ids)]
    assert stop in tok.decode(c.token_ids)  # the token that completed the stop string is kept


def test_special_token_stop_string() -> None:
    backend = _backend()
    answer_end = backend.tokenizer.token_to_id("</answer>")
    assert answer_end is not None
    handle = _bias_hook(backend, answer_end, 50.0)
    try:
        [[c]] = _generate(
            backend, SamplingParams(max_new_tokens=8, stop=("</answer>",), seed=0), ["a"]
        )
    finally:
        handle.remove()
    assert (c.text, c.token_ids, c.finish_reason) == ("", (answer_end,), "stop")


def test_eos_stops_and_is_not_in_the_text() -> None:
    backend = _backend()
    eos = backend.tokenizer.eos_token_id
    handle = _bias_hook(backend, eos, 50.0)
    try:
        result = _generate(backend, SamplingParams(n=2, max_new_tokens=8, seed=0))
    finally:
        handle.remove()
    for comps in result:
        for c in comps:
            assert (c.text, c.token_ids, c.finish_reason) == ("", (eos,), "stop")
            assert c.logprobs[0] > -1e-3


def _outputs(result: list[list[Completion]]) -> list[list[tuple[object, ...]]]:
    return [[(c.token_ids, c.logprobs, c.text) for c in r] for r in result]


def test_update_weights_in_process_and_from_disk(tmp_path: Path) -> None:
    backend = _backend(seed=0)
    params = SamplingParams(n=2, max_new_tokens=8, seed=0)
    original = _outputs(_generate(backend, params))
    other_model, tok = load_model(None, spec=SPEC, seed=1)
    expected = _outputs(_generate(TorchBackend(other_model, tok, device="cpu"), params))
    assert original != expected

    async def sync_in_process() -> int:
        return await backend.update_weights(InProcessWeights(other_model.state_dict(), 3))

    assert trio.run(sync_in_process) == 3
    assert backend.weight_version == 3
    got = _generate(backend, params)
    assert _outputs(got) == expected
    assert all(c.weight_version == 3 for r in got for c in r)

    first_model, _ = load_model(None, spec=SPEC, seed=0)
    save_model(first_model, tok, tmp_path)

    async def sync_from_disk() -> int:
        return await backend.update_weights(CheckpointWeights(str(tmp_path), 4))

    assert trio.run(sync_from_disk) == 4
    assert _outputs(_generate(backend, params)) == original


def test_rejected_weight_updates_keep_the_old_weights() -> None:
    backend = _backend()
    before = {k: v.clone() for k, v in backend._model.state_dict().items()}

    async def attempt(source: WeightSource | InProcessWeights) -> int:
        return await backend.update_weights(source)

    bad = InProcessWeights({"model.norm.weight": torch.zeros(3)}, 9)
    with pytest.raises(WeightSyncError):
        trio.run(attempt, bad)
    with pytest.raises(WeightSyncError):
        trio.run(attempt, CheckpointWeights("/nonexistent/azr-checkpoint", 9))
    dist = DistributedWeights("g", ("w",), ("float32",), ((2,),), 9)
    with pytest.raises(UnsupportedWeightSource):
        trio.run(attempt, dist)
    assert backend.weight_version == 0
    assert all(torch.equal(backend._model.state_dict()[k], v) for k, v in before.items())


def test_cancellation_interrupts_decoding() -> None:
    backend = _backend()
    handle = _bias_hook(backend, backend.tokenizer.eos_token_id, -1e9)  # never stop early

    async def main() -> None:
        with trio.move_on_after(0.2) as scope:
            await backend.generate(["a"], SamplingParams(max_new_tokens=100_000, seed=0))
        assert scope.cancelled_caught
        # The backend is still usable afterwards.
        [[c]] = await backend.generate(["a"], SamplingParams(max_new_tokens=2, seed=0))
        assert len(c.token_ids) == 2

    try:
        trio.run(main)
    finally:
        handle.remove()


def test_aclose_aborts_running_generation_and_then_refuses() -> None:
    backend = _backend()
    _bias_hook(backend, backend.tokenizer.eos_token_id, -1e9)
    results: list[list[list[Completion]]] = []

    async def main() -> None:
        async def run() -> None:
            results.append(
                await backend.generate(PROMPTS, SamplingParams(max_new_tokens=100_000, seed=0))
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.sleep(0.2)
            await backend.aclose()
        await backend.aclose()  # idempotent
        with pytest.raises(BackendClosed):
            await backend.generate(PROMPTS, SamplingParams())
        with pytest.raises(BackendClosed):
            await backend.update_weights(CheckpointWeights("x", 1))

    trio.run(main)
    [result] = results
    assert all(c.finish_reason == "abort" for r in result for c in r)
    assert all(len(c.token_ids) == len(c.logprobs) for r in result for c in r)


def test_invalid_requests_are_rejected() -> None:
    backend = _backend()
    with pytest.raises(InvalidRequest):
        _generate(backend, SamplingParams(), [""])
    with pytest.raises(InvalidRequest):
        trio.run(backend.generate, "not a list", SamplingParams())
    for bad in ({"n": 0}, {"top_p": 0.0}, {"temperature": -1.0}, {"stop": ("",)}):
        with pytest.raises(InvalidSamplingParams):
            SamplingParams(**bad)  # type: ignore[arg-type]


def test_weight_sources_are_a_tagged_wire_union() -> None:
    decoder = msgspec.json.Decoder(WeightSource)
    for source in (
        CheckpointWeights("/ckpt/step-3", 3),
        DistributedWeights("g", ("a", "b"), ("bfloat16", "float32"), ((2, 3), ()), 4),
    ):
        assert decoder.decode(msgspec.json.encode(source)) == source
    assert b'"type":"checkpoint"' in msgspec.json.encode(CheckpointWeights("p", 1))


def test_from_pretrained_loads_a_saved_model(tmp_path: Path) -> None:
    model, tok = load_model(None, spec=SPEC, seed=0)
    save_model(model, tok, tmp_path)
    loaded = TorchBackend.from_pretrained(tmp_path, device="cpu")
    assert isinstance(loaded.tokenizer, Tokenizer)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    assert _generate(loaded, greedy) == _generate(TorchBackend(model, tok, device="cpu"), greedy)


def test_token_id_prompts_generate_what_the_same_text_does() -> None:
    backend = _backend()
    params = SamplingParams(n=2, max_new_tokens=5, seed=3)
    ids = [backend.tokenizer.encode(p) for p in PROMPTS]
    by_ids = trio.run(backend.generate_ids, ids, params)
    assert _outputs(by_ids) == _outputs(_generate(backend, params))
    vocab = len(backend.tokenizer)
    for bad in ([[]], [[1, vocab]], [[1, -1]]):
        with pytest.raises(InvalidRequest):
            trio.run(backend.generate_ids, bad, params)
