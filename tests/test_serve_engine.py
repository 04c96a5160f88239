"""The continuous-batching engine: requests join and leave one decoding loop at token
boundaries, each with its own settings, and a greedy answer under concurrency is the answer
the request gets alone."""

import asyncio

import pytest
import torch

import wxb
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.serve.engine import (
    Engine,
    Finished,
    PromptLogprobs,
    QueueFull,
    SamplingParams,
    Token,
    _penalize,
)

VOCAB = 97


def tiny(family: str):
    torch.manual_seed(0)
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4,
                                      n_positions=128, bos_token_id=1, eos_token_id=2)).eval()


def random_prompts(count: int, seed: int = 1) -> list[tuple[list[int], int]]:
    """(prompt ids, max_tokens) pairs of mixed lengths."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(3, VOCAB, (int(torch.randint(1, 40, (1,), generator=g)),),
                           generator=g).tolist(), int(torch.randint(1, 30, (1,), generator=g)))
            for _ in range(count)]


async def collect(request) -> tuple[list[Token], Finished, list]:
    tokens, others = [], []
    async for event in request.events():
        if isinstance(event, Token):
            tokens.append(event)
        elif isinstance(event, Finished):
            return tokens, event, others
        else:
            others.append(event)
    raise AssertionError("no Finished event")


def run(engine: Engine, coroutine):
    async def main():
        engine.start()
        try:
            return await coroutine()
        finally:
            engine.stop()
    return asyncio.run(main())


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_greedy_answers_under_concurrency_equal_the_answers_alone(family):
    model = tiny(family)
    work = random_prompts(14)
    engine = Engine(model, max_concurrency=5, max_queue=32)  # some wait, rows come and go

    async def clients():
        async def one(i, prompt, n):
            await asyncio.sleep(0.002 * (i % 4))  # joining at different steps
            request = engine.submit(prompt, SamplingParams(max_tokens=n, temperature=0))
            return await collect(request)
        return await asyncio.gather(*(one(i, p, n) for i, (p, n) in enumerate(work)))

    results = run(engine, clients)
    for (prompt, n), (tokens, finished, _) in zip(work, results, strict=True):
        alone = wxb.generate(model, torch.tensor([prompt]), max_new_tokens=n,
                             do_sample=False, eos_token_id=None)[0, len(prompt):].tolist()
        assert [t.id for t in tokens] == alone
        assert finished.reason == "length"
    assert engine.stats.generated_tokens == sum(n for _, n in work)
    assert not engine.active and engine.batch.cache is None


def test_logprobs_are_the_models_log_softmax_and_the_prompt_is_scored():
    model = tiny("llama")
    prompt = [5, 17, 33, 8, 61]
    engine = Engine(model)

    async def client():
        params = SamplingParams(max_tokens=4, temperature=0, logprobs=3, prompt_logprobs=2)
        return await collect(engine.submit(prompt, params))

    tokens, finished, others = run(engine, client)
    assert finished.reason == "length" and len(tokens) == 4
    ids = prompt + [t.id for t in tokens]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    for i, token in enumerate(tokens):
        row = logprobs[len(prompt) - 1 + i]
        assert token.logprob == pytest.approx(float(row[token.id]), abs=1e-5)
        assert [t for t, _ in token.top] == row.topk(3).indices.tolist()
        assert token.top[0][0] == token.id  # greedy picks the best
    [scored] = others
    assert isinstance(scored, PromptLogprobs) and scored.logprobs[0] is None
    assert scored.logprobs[1:] == pytest.approx(
        [float(logprobs[i, prompt[i + 1]]) for i in range(len(prompt) - 1)], abs=1e-5)
    assert len(scored.top) == len(prompt) and len(scored.top[1]) == 2


def test_max_tokens_zero_scores_the_prompt_only():
    engine = Engine(tiny("llama"))

    async def client():
        return await collect(engine.submit([4, 9, 12], SamplingParams(max_tokens=0,
                                                                        prompt_logprobs=0)))
    tokens, finished, others = run(engine, client)
    assert tokens == [] and finished.reason == "length"
    assert len(others[0].logprobs) == 3


def test_a_stop_token_ends_the_answer_and_is_its_last_token():
    model = tiny("llama")
    prompt = [7, 21, 3]
    first = wxb.generate(model, torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                         eos_token_id=None)[0, len(prompt):].tolist()
    engine = Engine(model)

    async def client():
        params = SamplingParams(max_tokens=20, temperature=0, stop_token_ids=(first[2],))
        return await collect(engine.submit(prompt, params))
    tokens, finished, _ = run(engine, client)
    stop_at = first.index(first[2])
    assert [t.id for t in tokens] == first[:stop_at + 1]
    assert finished.reason == "stop"


def test_a_seed_reproduces_a_sample_and_settings_are_per_request():
    engine = Engine(tiny("llama"), max_concurrency=4)
    prompt = [11, 12, 13]

    async def clients():
        def params(seed, temperature=1.0, top_k=0):
            return SamplingParams(max_tokens=12, temperature=temperature, seed=seed,
                                  top_k=top_k)
        requests = [engine.submit(prompt, params(3)), engine.submit(prompt, params(3)),
                    engine.submit(prompt, params(4)), engine.submit(prompt, params(5, 1.0, 1))]
        return await asyncio.gather(*(collect(r) for r in requests))

    (a, _, _), (b, _, _), (c, _, _), (greedy_k1, _, _) = run(engine, clients)
    assert [t.id for t in a] == [t.id for t in b]
    assert [t.id for t in a] != [t.id for t in c]
    # top_k 1 leaves one token to sample: the greedy answer.
    model = engine.model
    alone = wxb.generate(model, torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                         eos_token_id=None)[0, 3:].tolist()
    assert [t.id for t in greedy_k1] == alone


def test_a_full_queue_refuses_and_a_cancelled_request_frees_its_slot():
    engine = Engine(tiny("llama"), max_concurrency=1, max_queue=1)

    async def clients():
        long = engine.submit([5, 6], SamplingParams(max_tokens=100, temperature=0))
        events = long.events()
        assert isinstance(await anext(events), Token)  # it holds the one slot now
        waiting = engine.submit([5, 6], SamplingParams(max_tokens=3, temperature=0))
        with pytest.raises(QueueFull):
            engine.submit([5, 6], SamplingParams(max_tokens=3))
        async for event in events:
            if isinstance(event, Token) and len(long.output_ids) >= 3:
                long.cancel()
            if isinstance(event, Finished):
                assert event.reason == "abort"
                break
        tokens, finished, _ = await collect(waiting)
        return len(long.output_ids), len(tokens), finished.reason

    generated, waited, reason = run(engine, clients)
    assert generated < 100 and (waited, reason) == (3, "length")
    assert not engine.active and engine.queue_depth == 0


def test_presence_and_frequency_penalties_follow_openai():
    scores = torch.zeros(6)
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = _penalize(scores, [2, 2, 4], params)
    assert out.tolist() == [0, 0, -(0.5 + 2 * 0.25), 0, -(0.5 + 0.25), 0]


def test_a_request_that_fails_ends_with_its_error_and_the_engine_goes_on():
    engine = Engine(tiny("llama"), max_concurrency=4)

    async def clients():
        bad = engine.submit([VOCAB + 5], SamplingParams(max_tokens=3))  # no such token
        _, failed, _ = await collect(bad)
        tokens, after, _ = await collect(engine.submit([4, 5], SamplingParams(
            max_tokens=3, temperature=0)))
        return failed, len(tokens), after.reason

    failed, served, reason = run(engine, clients)
    assert failed.reason == "abort" and "IndexError" in failed.error
    assert (served, reason) == (3, "length")
    assert engine.stats.finished == 2
