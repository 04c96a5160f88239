"""wxb.generation against transformers: same settings, same tokens.

The models are tiny random transformers GPT-2 and LLaMA models, wrapped in an adapter that gives
them the interface wxb models have (``past_key_values`` in and out, ``cache.reorder``), so any
difference comes from decoding, not from the network.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers.generation import logits_process as hf_lp

from wxb.errors import ConfigError
from wxb.generation import GenerationConfig, TextStreamer, generate, stream
from wxb.generation import logits as wx_lp
from wxb.generation.logits import build_processors

transformers.logging.set_verbosity_error()

VOCAB = 96
EOS = 2


class HFCache:
    """wxb's cache interface over transformers' DynamicCache."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def reorder(self, beam_idx: torch.Tensor) -> None:
        self.inner.reorder_cache(beam_idx)

    def get_seq_length(self) -> int:
        return self.inner.get_seq_length()


class HFAdapter(torch.nn.Module):
    """A transformers causal LM with the wxb model interface."""

    def __init__(self, hf) -> None:
        super().__init__()
        self.hf = hf
        self.config = hf.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=True, logits_to_keep=0):
        out = self.hf(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=position_ids, use_cache=use_cache,
                      cache=None if past_key_values is None else past_key_values.inner,
                      logits_to_keep=logits_to_keep)
        return SimpleNamespace(logits=out.logits,
                               past_key_values=past_key_values or HFCache(out.cache))


def tiny_gpt2(vocab_size: int = VOCAB) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    # A large initializer_range gives peaked distributions, so top-k/top-p/min-p cut something.
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32,
                                     n_layer=2, n_head=4, bos_token_id=1, eos_token_id=EOS,
                                     initializer_range=0.2)
    return transformers.GPT2LMHeadModel(config).eval()


def tiny_llama() -> transformers.LlamaForCausalLM:
    torch.manual_seed(1)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64,
                                      bos_token_id=1, eos_token_id=EOS, initializer_range=0.2)
    return transformers.LlamaForCausalLM(config).eval()


MODELS = {"gpt2": tiny_gpt2(), "llama": tiny_llama()}

# Three prompts of lengths 4, 6 and 3, left-padded with 0.
PROMPTS = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [0, 0, 0, 20, 21, 22]])
MASK = (torch.arange(6)[None] >= torch.tensor([[2], [0], [3]])).long()


def hf_generate(hf, seed: int | None = None, ids=PROMPTS, mask=MASK, **kwargs):
    if seed is not None:
        torch.manual_seed(seed)
    return hf.generate(ids, attention_mask=mask, **kwargs)


def wxb_generate(hf, ids=PROMPTS, mask=MASK, **kwargs):
    return generate(HFAdapter(hf), ids, attention_mask=mask, **kwargs)


def assert_same_as_hf(hf, seed: int | None = None, **kwargs) -> torch.Tensor:
    expected = hf_generate(hf, seed, **kwargs)
    got = wxb_generate(hf, seed=seed, **kwargs)
    assert torch.equal(got, expected), f"\nwxb:\n{got}\ntransformers:\n{expected}"
    return got


def frequent_token(hf) -> int:
    """A token the model picks often (greedily), to serve as eos so that sequences do end."""
    generated = hf_generate(hf, max_new_tokens=10, eos_token_id=None)[:, PROMPTS.shape[1]:]
    return int(generated.flatten().mode().values)


# ---------------------------------------------------------------- logits processors


def random_scores(rows: int = 4, vocab: int = 50, ties: bool = False) -> torch.Tensor:
    scores = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3
    # Rounded scores have many ties, the hard case for top-k/top-p boundaries.
    return scores.round() if ties else scores


IDS = torch.randint(0, 60, (4, 12), generator=torch.Generator().manual_seed(1))
IDS[:, 6:9] = IDS[:, 2:5]  # repeated n-grams for the no-repeat processor to find

PAIRS = [
    ("temperature", lambda m: m.TemperatureLogitsWarper(0.7)),
    ("top_k", lambda m: m.TopKLogitsWarper(5)),
    ("top_k keeps min_tokens", lambda m: m.TopKLogitsWarper(2, min_tokens_to_keep=7)),
    ("top_k above vocab", lambda m: m.TopKLogitsWarper(500)),
    ("top_p", lambda m: m.TopPLogitsWarper(0.8)),
    ("top_p=1", lambda m: m.TopPLogitsWarper(1.0)),
    ("top_p tiny keeps min_tokens", lambda m: m.TopPLogitsWarper(1e-4, min_tokens_to_keep=3)),
    ("min_p", lambda m: m.MinPLogitsWarper(0.1)),
    ("min_p=1 keeps min_tokens", lambda m: m.MinPLogitsWarper(1.0, min_tokens_to_keep=4)),
    ("repetition", lambda m: m.RepetitionPenaltyLogitsProcessor(1.3)),
    ("repetition reward", lambda m: m.RepetitionPenaltyLogitsProcessor(0.8)),
    ("repetition skip int", lambda m: m.RepetitionPenaltyLogitsProcessor(
        1.5, prompt_ignore_length=5)),
    ("repetition skip per row", lambda m: m.RepetitionPenaltyLogitsProcessor(
        1.5, prompt_ignore_length=torch.tensor([0, 3, 7, 12]))),
    ("no_repeat_ngram 1", lambda m: m.NoRepeatNGramLogitsProcessor(1)),
    ("no_repeat_ngram 2", lambda m: m.NoRepeatNGramLogitsProcessor(2)),
    ("no_repeat_ngram 3", lambda m: m.NoRepeatNGramLogitsProcessor(3)),
    ("no_repeat_ngram longer than input", lambda m: m.NoRepeatNGramLogitsProcessor(20)),
    ("min_new_tokens bans eos", lambda m: m.MinNewTokensLengthLogitsProcessor(8, 5, [2, 3])),
    ("min_new_tokens reached", lambda m: m.MinNewTokensLengthLogitsProcessor(8, 4, [2, 3])),
    ("min_new_tokens eos beyond the vocabulary",
     lambda m: m.MinNewTokensLengthLogitsProcessor(8, 5, [2, 1000])),
    ("suppress", lambda m: m.SuppressTokensLogitsProcessor([1, 5, 5, 1000])),
]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("make", [p[1] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_processor_equals_transformers(make, ties):
    scores = random_scores(ties=ties)
    before = scores.clone()
    got = make(wx_lp)(IDS, scores)
    expected = make(hf_lp)(IDS, scores.clone())
    assert torch.equal(got, expected)
    assert torch.equal(scores, before), "a processor must not change its input"


def test_processor_order_equals_transformers():
    hf = MODELS["gpt2"]
    settings = dict(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, min_p=0.05,
                    repetition_penalty=1.2, no_repeat_ngram_size=2, min_new_tokens=3,
                    suppress_tokens=[4], eos_token_id=EOS)
    hf_config = transformers.GenerationConfig(**settings)
    hf._prepare_special_tokens(hf_config, device="cpu")
    expected = hf._get_logits_processor(hf_config, input_ids_seq_length=5, device="cpu",
                                        model_kwargs={"attention_mask": None})
    ours = build_processors(GenerationConfig(**settings), prompt_length=5,
                            eos_token_id=torch.tensor([EOS]), padding_lengths=None)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in expected]


# ---------------------------------------------------------------- parity of whole generations


@pytest.mark.parametrize("name", MODELS)
def test_greedy_left_padded_batch(name):
    out = assert_same_as_hf(MODELS[name], max_new_tokens=12)
    assert out.shape == (3, 6 + 12)


def test_greedy_without_padding_and_one_dimensional_prompt():
    hf = MODELS["llama"]
    expected = hf.generate(PROMPTS[1:2], max_new_tokens=8)
    assert torch.equal(generate(HFAdapter(hf), PROMPTS[1], max_new_tokens=8), expected)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("settings", [
    dict(),
    dict(temperature=0.7),
    dict(top_k=8, temperature=1.3),
    dict(top_k=0, top_p=0.8),
    dict(top_k=0, min_p=0.1, temperature=0.9),
    dict(top_k=20, top_p=0.9, min_p=0.02, temperature=0.8, num_return_sequences=2),
], ids=["defaults", "temperature", "top_k", "top_p", "min_p", "all"])
def test_seeded_sampling(name, settings):
    assert_same_as_hf(MODELS[name], seed=3, do_sample=True, max_new_tokens=10, **settings)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("settings", [
    dict(repetition_penalty=1.5),
    dict(repetition_penalty=0.7),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=1, repetition_penalty=1.2, suppress_tokens=[43, 63]),
    dict(min_new_tokens=8, eos_token_id=43),
], ids=["penalty", "reward", "ngram2", "ngram1+penalty+suppress", "min_new_tokens"])
def test_penalties(name, settings):
    assert_same_as_hf(MODELS[name], max_new_tokens=12, **settings)


def test_sampling_with_penalties():
    assert_same_as_hf(MODELS["gpt2"], seed=11, do_sample=True, max_new_tokens=12,
                      repetition_penalty=1.3, no_repeat_ngram_size=2, top_p=0.9)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("beams,length_penalty,early_stopping,returns", [
    (3, 1.0, False, 1),
    (4, 0.6, True, 2),
    (4, 2.0, "never", 2),
    (3, -0.5, False, 3),
    (3, 1.5, True, 1),
])
def test_beam_search(name, beams, length_penalty, early_stopping, returns):
    hf = MODELS[name]
    eos = frequent_token(hf)
    settings = dict(max_new_tokens=10, num_beams=beams, length_penalty=length_penalty,
                    early_stopping=early_stopping, num_return_sequences=returns,
                    eos_token_id=eos, return_dict_in_generate=True)
    expected = hf_generate(hf, output_scores=True, **settings)
    got = wxb_generate(hf, **settings)
    assert torch.equal(got.sequences, expected.sequences)
    assert torch.equal(got.sequences_scores, expected.sequences_scores)


def test_beam_search_with_processors_and_sampling():
    hf = MODELS["gpt2"]
    eos = frequent_token(hf)
    assert_same_as_hf(hf, max_new_tokens=8, num_beams=3, eos_token_id=eos,
                      repetition_penalty=1.3, no_repeat_ngram_size=2)
    assert_same_as_hf(hf, seed=5, do_sample=True, max_new_tokens=8, num_beams=3,
                      eos_token_id=[eos, 7], top_k=10, temperature=0.8)


@pytest.mark.parametrize("name", MODELS)
def test_eos_ends_rows_and_pads_them(name):
    hf = MODELS[name]
    greedy = assert_same_as_hf(hf, max_new_tokens=12, eos_token_id=None)  # eos turned off
    eos = int(greedy[0, 6 + 3])  # row 0's fourth new token
    out = assert_same_as_hf(hf, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    row = out[0, 6:].tolist()
    end = row.index(eos)
    assert all(t == 0 for t in row[end + 1:])
    # Every row ended, or ran to max_new_tokens; the batch stops as soon as all rows ended.
    assert out.shape[1] <= 6 + 12


def test_eos_list_and_all_rows_finishing_early():
    hf = MODELS["gpt2"]
    greedy = hf_generate(hf, max_new_tokens=12, eos_token_id=None)
    eos = sorted({int(greedy[r, 6 + 1]) for r in range(3)})  # each row's second new token
    out = assert_same_as_hf(hf, max_new_tokens=12, eos_token_id=eos)
    assert out.shape[1] == 6 + 2


@pytest.mark.parametrize("settings", [dict(), dict(num_beams=3)])
def test_an_eos_outside_the_vocabulary_never_ends_a_sequence(settings):
    """transformers accepts it (it is never generated); so does wxb, with a warning."""
    hf = MODELS["gpt2"]
    with pytest.warns(UserWarning, match="eos_token_id 101 is outside the model's vocabulary "
                                         "of 96 tokens"):
        out = assert_same_as_hf(hf, max_new_tokens=7, eos_token_id=VOCAB + 5, **settings)
    assert out.shape[1] == 6 + 7


def test_an_eos_outside_the_vocabulary_beside_one_inside():
    """Rows end at the eos that exists and are padded with it: the first eos, which
    transformers would pad with, cannot be fed to the model."""
    hf = MODELS["gpt2"]
    eos = int(hf_generate(hf, max_new_tokens=12, eos_token_id=None)[0, 6 + 2])
    with pytest.warns(UserWarning, match="eos_token_id 96 is outside"):
        out = wxb_generate(hf, max_new_tokens=12, eos_token_id=[VOCAB, eos])
    row = out[0, 6:].tolist()
    end = row.index(eos)
    assert end <= 2 and row[end:] == [eos] * (len(row) - end)
    assert torch.equal(out, hf_generate(hf, max_new_tokens=12, eos_token_id=eos))


def test_a_prompt_outside_the_vocabulary_is_one_clear_error():
    with pytest.raises(ConfigError, match="the prompt holds token id 96, outside the model's "
                                          "vocabulary of 96 tokens"):
        wxb_generate(MODELS["gpt2"], ids=PROMPTS.masked_fill(PROMPTS == 14, VOCAB))


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")
def test_max_length_counts_the_prompt_and_default_is_20_new_tokens():
    hf = MODELS["llama"]
    assert assert_same_as_hf(hf, max_length=10).shape[1] == 10
    assert assert_same_as_hf(hf).shape[1] == 6 + 20


# ---------------------------------------------------------------- the course's tricks


def test_bad_token_ids_are_never_generated():
    hf = MODELS["gpt2"]
    greedy = wxb_generate(hf, max_new_tokens=12)[:, 6:]
    bad = sorted(set(greedy[:, :3].flatten().tolist()))  # tokens greedy decoding likes
    out = wxb_generate(hf, max_new_tokens=12, bad_token_ids=bad)[:, 6:]
    assert not torch.isin(out, torch.tensor(bad)).any()
    # The same ban as transformers' suppress_tokens.
    assert torch.equal(out, hf_generate(hf, max_new_tokens=12, suppress_tokens=bad)[:, 6:])


@pytest.mark.parametrize("window", [1, 3, 6])
def test_no_repeat_window(window):
    hf = MODELS["gpt2"]
    for do_sample in (False, True):
        out = wxb_generate(hf, max_new_tokens=20, no_repeat_window=window,
                           do_sample=do_sample, seed=0)[:, 6:]
        for row in out.tolist():
            for i, token in enumerate(row):
                assert token not in row[max(0, i - window):i]


def test_no_repeat_window_bans_only_recent_generated_tokens():
    ban = wx_lp.NoRepeatWindowLogitsProcessor(window=3, prompt_length=4)
    ids = torch.tensor([[10, 11, 12, 13, 20, 21, 22, 23]])
    scores = torch.zeros(1, 30)
    assert torch.equal(ban(ids[:, :4], scores), scores)  # only the prompt so far
    banned = (ban(ids, scores) == -math.inf).nonzero()[:, 1].tolist()
    assert banned == [21, 22, 23]


# ---------------------------------------------------------------- stop strings


def byte_level_tokenizer() -> transformers.PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    text = ["the quick brown fox jumps over the lazy dog", "stop here. stop there!",
            "我爱北京天安门", "hello world, hello there"] * 20
    backend.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend)


def test_stop_strings_equal_transformers():
    tok = byte_level_tokenizer()
    hf = tiny_gpt2(vocab_size=len(tok))
    tok.pad_token, tok.padding_side = tok.convert_ids_to_tokens(0), "left"
    batch = tok(["hello there", "the fox, st"], padding=True, return_tensors="pt")
    prompts, mask = batch["input_ids"], batch["attention_mask"]
    free = hf.generate(prompts, attention_mask=mask, max_new_tokens=12, eos_token_id=None)
    row0, row1 = (tok.decode(free[r, prompts.shape[1]:]) for r in range(2))
    # Stop strings the model will produce: one ends mid-token, one spans two tokens.
    stops = [row0[2:5], row1[4:6]]
    for stop in stops:
        assert stop.strip() and "\ufffd" not in stop, f"unusable stop string {stop!r}"
    settings = dict(max_new_tokens=12, stop_strings=stops, eos_token_id=EOS, pad_token_id=0)
    expected = hf.generate(prompts, attention_mask=mask, tokenizer=tok, **settings)
    got = generate(HFAdapter(hf), prompts, attention_mask=mask, tokenizer=tok, **settings)
    assert torch.equal(got, expected)
    assert got.shape[1] < prompts.shape[1] + 12


class CharTokenizer:
    """Token i is the i-th character of ALPHABET; 40, 41, 42 are the three UTF-8 bytes of '好'."""

    ALPHABET = "abcdefghijklmnopqrstuvwxyz .\n"
    BYTES: ClassVar[dict[int, bytes]] = {**{i: c.encode() for i, c in enumerate(ALPHABET)},
             40: b"\xe5", 41: b"\xa5", 42: b"\xbd"}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        data = b"".join(self.BYTES.get(int(i), b"?") for i in ids)
        return data.decode("utf-8", errors="replace")


def test_stop_string_in_prompt_does_not_stop():
    hf = MODELS["gpt2"]
    prompt = torch.tensor([[18, 19, 14, 15]])  # "stop"
    free = generate(HFAdapter(hf), prompt, max_new_tokens=6, eos_token_id=None)
    got = generate(HFAdapter(hf), prompt, max_new_tokens=6, eos_token_id=None,
                   stop_strings="stop", tokenizer=CharTokenizer())
    assert torch.equal(got, free)


def test_stop_string_split_across_a_multibyte_character():
    tok = CharTokenizer()
    hf = MODELS["gpt2"]
    # Force the model to spell "a好": ban everything but the planned next token.
    plan = [0, 40, 41, 42, 3]

    class Forced(HFAdapter):
        def forward(self, input_ids, **kw):
            cache = kw["past_key_values"]
            step = cache.get_seq_length() if cache else 0
            out = super().forward(input_ids, **kw)
            logits = torch.full_like(out.logits, -1e4)
            logits[..., plan[min(step, len(plan) - 1)]] = 0
            return SimpleNamespace(logits=logits, past_key_values=out.past_key_values)

    got = generate(Forced(hf), torch.tensor([[7]]), max_new_tokens=5, eos_token_id=None,
                   stop_strings=["好"], tokenizer=tok)
    assert tok.decode(got[0].tolist()) == "ha好"


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("settings", [
    dict(),
    dict(do_sample=True, top_p=0.9, seed=4),
    dict(do_sample=True, num_return_sequences=2, seed=4),
])
def test_stream_yields_what_generate_returns(settings):
    model = HFAdapter(MODELS["llama"])
    eos = frequent_token(MODELS["llama"])
    kwargs = dict(attention_mask=MASK, max_new_tokens=12, eos_token_id=eos, **settings)
    steps = list(stream(model, PROMPTS, **kwargs))
    full = generate(model, PROMPTS, **kwargs)
    assert torch.equal(torch.stack(steps, dim=1), full[:, PROMPTS.shape[1]:])


def test_text_streamer_never_breaks_a_character():
    tok = CharTokenizer()
    ids = [7, 4, 11, 11, 14, 26, 40, 41, 42, 28, 0, 40, 41, 42]  # "hello 好\na好"
    pieces = list(TextStreamer(tok)(ids))
    assert "".join(pieces) == tok.decode(ids) == "hello 好\na好"
    assert not any("\ufffd" in p for p in pieces)
    assert pieces[-1].endswith("好")
    unfinished = TextStreamer(tok)
    assert [unfinished.put(i) for i in (0, 40)] == ["a", ""]
    assert unfinished.end() == "\ufffd"


def test_text_streamer_on_generated_tokens():
    tok = byte_level_tokenizer()
    hf = tiny_gpt2(vocab_size=len(tok))
    prompt = torch.tensor([tok.encode("我爱")])
    steps = stream(HFAdapter(hf), prompt, max_new_tokens=15, eos_token_id=None)
    pieces = list(TextStreamer(tok)(steps))
    full = generate(HFAdapter(hf), prompt, max_new_tokens=15, eos_token_id=None)
    assert "".join(pieces) == tok.decode(full[0, prompt.shape[1]:])


# ---------------------------------------------------------------- seeds, config, errors


def test_seed_reproduces_and_differs():
    model = HFAdapter(MODELS["gpt2"])
    a = generate(model, PROMPTS, attention_mask=MASK, do_sample=True, seed=1)
    b = generate(model, PROMPTS, attention_mask=MASK, do_sample=True, seed=1)
    c = generate(model, PROMPTS, attention_mask=MASK, do_sample=True, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generation_config_object_with_overrides_and_strings():
    config = GenerationConfig.from_dict({"max_new_tokens": "5", "do_sample": "true",
                                         "temperature": "0.7", "early_stopping": "never",
                                         "stop_strings": "end", "eos_token_id": [2, 3]})
    assert (config.max_new_tokens, config.do_sample, config.temperature) == (5, True, 0.7)
    assert config.stop_strings == ["end"] and config.early_stopping == "never"
    model = HFAdapter(MODELS["gpt2"])
    greedy = generate(model, PROMPTS, config.updated(do_sample=False, stop_strings=None),
                      attention_mask=MASK)
    assert greedy.shape[1] == 6 + 5
    assert torch.equal(greedy, generate(model, PROMPTS, attention_mask=MASK, max_new_tokens=5,
                                        eos_token_id=[2, 3]))


def test_attention_mask_inferred_from_a_distinct_pad_token():
    assert_same_as_hf(MODELS["gpt2"], mask=None, pad_token_id=0, max_new_tokens=6)


def test_truncate_prompt_keeps_the_last_tokens():
    model = HFAdapter(MODELS["gpt2"])  # context window 64
    long = torch.arange(60).remainder(VOCAB)[None] + 3
    out = generate(model, long, max_new_tokens=10, truncate_prompt=True)
    assert torch.equal(out, generate(model, long[:, -54:], max_new_tokens=10))


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1"),
    (dict(top_p=0.0), "top_p must be in (0, 1]"),
    (dict(top_p=1.5), "top_p must be in (0, 1]"),
    (dict(temperature=-0.5), "temperature must be positive"),
    (dict(temperature=0.0, do_sample=True), "set do_sample=False"),
    (dict(top_k=-1), "top_k must be 0"),
    (dict(min_p=1.5), "min_p must be in [0, 1]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be positive"),
    (dict(no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(no_repeat_window=-2), "no_repeat_window"),
    (dict(num_beams=0), "num_beams must be at least 1"),
    (dict(num_beams=2, num_return_sequences=3), "must not exceed num_beams"),
    (dict(num_return_sequences=2), "set do_sample=True"),
    (dict(early_stopping="sometimes"), "early_stopping must be true, false or 'never'"),
    (dict(stop_strings=[""]), "stop_strings must be non-empty"),
    (dict(eos_token_id=-1), "eos_token_id must hold token ids"),
    (dict(eos_token_id=3, pad_token_id=VOCAB), "pad_token_id 96 is outside the model's "
                                               "vocabulary of 96 tokens"),
    (dict(max_length=4), "max_length (prompt included) is 4"),
    (dict(stop_strings=["x"]), "pass generate(..., tokenizer=tok)"),
    (dict(top_pp=0.9), "unknown generation setting 'top_pp'"),
    (dict(max_new_tokens=60), "ask for at most 58 new tokens"),
    (dict(max_new_tokens=64, truncate_prompt=True), "leave no room for a prompt"),
])
def test_bad_settings_raise_one_clear_config_error(kwargs, message):
    with pytest.raises(ConfigError) as error:
        generate(HFAdapter(MODELS["gpt2"]), PROMPTS, attention_mask=MASK, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("call,message", [
    (lambda m: generate(m, torch.ones(1, 64, dtype=torch.long)), "context window is 64"),
    (lambda m: generate(m, PROMPTS, attention_mask=MASK.flip(1)), "pad prompts on the left"),
    (lambda m: generate(m, PROMPTS, attention_mask=MASK[:, 1:]), "they must match"),
    (lambda m: generate(m, torch.rand(2, 3)), "must be token ids"),
    (lambda m: stream(m, PROMPTS, num_beams=2), "cannot do beam search"),
])
def test_bad_inputs_raise_one_clear_config_error(call, message):
    with pytest.raises(ConfigError) as error:
        call(HFAdapter(MODELS["gpt2"]))
    assert message in str(error.value)
