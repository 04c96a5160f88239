"""ELMo's biLM (wxb.models.elmo) and its pretraining task (wxb.tasks.bilm): characters,
highway layers, the masked and causal LSTM stacks, the loss, ScalarMix, save/load, training."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import wxb
from wxb.errors import ConfigError, DataError
from wxb.models.elmo import (
    BOS,
    EOS,
    UNK,
    ElmoBiLM,
    ElmoConfig,
    ElmoVocabulary,
    Highway,
    ScalarMix,
    batch_to_ids,
    reverse_padded,
    word_char_ids,
)
from wxb.tasks.bilm.train import (
    SentenceDataset,
    collate_bilm,
    evaluate_bilm,
    split,
    train_bilm,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CHARS = 12
TINY = {"max_characters_per_token": CHARS, "char_embedding_dim": 8,
        "filters": [[1, 8], [2, 8], [3, 8]], "n_highway": 1, "projection_dim": 16,
        "hidden_size": 24, "dropout": 0.0}
SENTENCES = [["the", "cat", "sat"], ["a", "dog"], ["the", "big", "dog", "ran", "home"]]


def tiny_model(vocab_size=20, **fields):
    torch.manual_seed(0)
    return ElmoBiLM(ElmoConfig(vocab_size=vocab_size, **{**TINY, **fields})).eval()


def vocabulary():
    return ElmoVocabulary.from_words(sorted({w for s in SENTENCES for w in s}))


def batch(sentences=SENTENCES):
    vocab = vocabulary()
    dataset = SentenceDataset(sentences, vocab, CHARS)
    return collate_bilm([dataset[i] for i in range(len(dataset))])


# ----------------------------------------------------------------------------- characters


def test_words_are_utf8_bytes_between_elmo_markers_shifted_by_one():
    pad = 261  # ELMo's padding character 260, plus one
    assert word_char_ids("ab", 8) == (259, 98, 99, 260, pad, pad, pad, pad)
    assert word_char_ids(BOS, 6) == (259, 257, 260, pad, pad, pad)
    assert word_char_ids(EOS, 6) == (259, 258, 260, pad, pad, pad)
    assert word_char_ids("中", 6) == (259, 0xE4 + 1, 0xB8 + 1, 0xAD + 1, 260, pad)
    long = word_char_ids("x" * 100, 10)  # the first max - 2 bytes are kept
    assert long == (259, *[ord("x") + 1] * 8, 260)
    char_ids, mask = batch_to_ids([["ab"], ["ab", "中"]], 6)
    assert char_ids.shape == (2, 4, 6) and mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert char_ids[0, 3].eq(0).all()  # a padded word position is all 0
    assert char_ids[1, 0].tolist() == list(word_char_ids(BOS, 6))


def test_the_vocabulary_starts_with_elmos_specials_and_round_trips(tmp_path):
    vocab = vocabulary()
    assert vocab.words[:3] == [BOS, EOS, UNK]
    ids = vocab.encode(["the", "zebra"])
    assert ids.tolist() == [0, vocab.index["the"], vocab.index[UNK], 1]
    vocab.save(tmp_path)
    assert ElmoVocabulary.load(tmp_path).words == vocab.words
    with pytest.raises(DataError, match="starts with <S>"):
        ElmoVocabulary(["a", "b", "c"])


def test_the_collator_shifts_the_labels_each_way():
    b = batch()
    vocab = vocabulary()
    ids = vocab.encode(SENTENCES[1]).tolist()  # <S> a dog </S>
    assert b["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert b["labels_forward"][1].tolist() == [*ids[1:], -100, -100, -100, -100]
    assert b["labels_backward"][1].tolist() == [-100, *ids[:-1], -100, -100, -100]
    assert b["char_ids"][1, 4:].eq(0).all()


# ----------------------------------------------------------------------------- layers


def test_highway_is_the_formula_by_hand():
    layer = Highway(2, 1)
    assert layer.gates[0].bias.tolist() == [-1.0, -1.0]  # starts carrying 73% of x
    with torch.no_grad():
        layer.transforms[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        layer.transforms[0].bias.copy_(torch.tensor([1.0, -1.0]))
        layer.gates[0].weight.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
        layer.gates[0].bias.copy_(torch.tensor([0.0, -1.0]))
    y = layer(torch.tensor([[1.0, -2.0]]))
    # transform: relu([1 + 1, -4 - 1]) = [2, 0]; gate: sigmoid([0.5, -1])
    g0, g1 = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))
    expected = [g0 * 2 + (1 - g0) * 1, g1 * 0 + (1 - g1) * -2]
    assert y[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_reverse_padded_reverses_within_each_length():
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_padded(x, torch.tensor([4, 2]))
    assert out[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(out, torch.tensor([4, 2])), x)


def test_every_layer_has_its_shape_and_padding_stays_zero():
    model, b = tiny_model(), batch()
    mask = b["attention_mask"].bool()
    tokens = model.char_encoder(b["char_ids"], mask)
    assert tokens.shape == (3, 7, 16)
    layers = model.lstm(tokens, mask)
    assert len(layers) == 2 and all(f.shape == b_.shape == (3, 7, 16) for f, b_ in layers)
    reps = model.layer_representations(b["char_ids"], b["attention_mask"])
    assert len(reps) == 3 and all(r.shape == (3, 7, 32) for r in reps)
    assert torch.equal(reps[0], torch.cat([tokens, tokens], -1))
    assert torch.equal(reps[2], torch.cat(layers[1], -1))
    for r in reps:
        assert r[~mask].eq(0).all()
    out = model(**b, output_hidden_states=True)
    assert out.logits_forward.shape == out.logits_backward.shape == (3, 7, 20)
    assert all(torch.equal(a, c) for a, c in zip(out.hidden_states, reps, strict=True))
    assert ScalarMix(3)(reps, mask).shape == (3, 7, 32)


def test_padding_has_no_effect_and_torchs_lstm_agrees():
    model, b = tiny_model(), batch()
    with torch.no_grad():
        together = model.layer_representations(b["char_ids"], b["attention_mask"])
        for i, sentence in enumerate(SENTENCES):
            alone = model.layer_representations(*batch_to_ids([sentence], CHARS))
            n = len(sentence) + 2
            for j in range(3):
                torch.testing.assert_close(together[j][i, :n], alone[j][0], rtol=0, atol=1e-6)
        # The same weights through PyTorch's fused LSTM kernels (packed sequences).
        reference = ElmoBiLM(ElmoConfig(vocab_size=20, **{**TINY, "impl": "torch"})).eval()
        reference.load_state_dict(model.state_dict())
        theirs = reference.layer_representations(b["char_ids"], b["attention_mask"])
    for ours, other in zip(together, theirs, strict=True):
        torch.testing.assert_close(ours, other, rtol=1e-5, atol=1e-6)


def test_the_forward_lm_never_sees_the_future_nor_the_backward_lm_the_past():
    model, b = tiny_model(), batch()
    seen = []

    def keep_the_token_vectors(module, args, out):
        out.retain_grad()
        seen.append(out)

    hook = model.char_encoder.register_forward_hook(keep_the_token_vectors)
    try:
        t = 3  # sentence 2: <S> the big dog ran home </S>
        for direction in ("forward", "backward"):
            seen.clear()
            out = model(**b)
            logits = getattr(out, f"logits_{direction}")
            label = b[f"labels_{direction}"][2, t]
            F.cross_entropy(logits[2, t][None], label[None]).backward()
            grad = seen[0].grad.abs().sum(-1)  # (batch, seq): d loss / d token vector
            assert grad[[0, 1]].eq(0).all()  # the other sentences
            if direction == "forward":
                assert grad[2, t + 1:].eq(0).all() and (grad[2, :t + 1] > 0).all()
            else:
                assert grad[2, :t].eq(0).all() and (grad[2, t:7] > 0).all()
            model.zero_grad()
    finally:
        hook.remove()


def test_the_loss_is_the_mean_of_two_cross_entropies_by_hand():
    model, b = tiny_model(vocab_size=len(vocabulary())), batch()
    out = model(**b)

    def by_hand(logits, labels):
        keep = labels != -100
        logp = logits[keep].log_softmax(-1)
        return -logp.gather(1, labels[keep][:, None]).mean()

    f = by_hand(out.logits_forward, b["labels_forward"])
    bw = by_hand(out.logits_backward, b["labels_backward"])
    torch.testing.assert_close(out.loss_forward, f)
    torch.testing.assert_close(out.loss_backward, bw)
    torch.testing.assert_close(out.loss, (f + bw) / 2)
    assert out[0] is out.loss  # a ModelOutput: the loss first when labels are given


# ----------------------------------------------------------------------------- ScalarMix


def layers_and_mask():
    torch.manual_seed(1)
    layers = [torch.randn(2, 4, 3, dtype=torch.float64) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    return layers, mask


def test_scalar_mix_is_gamma_times_softmax_weighted_layers():
    layers, _ = layers_and_mask()
    mix = ScalarMix(3, initial_scalar_parameters=[0.1, -0.3, 0.7]).double()
    with torch.no_grad():
        mix.gamma.fill_(1.5)
    e = [math.exp(w) for w in (0.1, -0.3, 0.7)]
    expected = 1.5 * sum(ej / sum(e) * h for ej, h in zip(e, layers, strict=True))
    torch.testing.assert_close(mix(layers), expected)


def test_scalar_mix_with_layer_norm_uses_the_unmasked_values_only():
    layers, mask = layers_and_mask()
    mix = ScalarMix(3, do_layer_norm=True, initial_scalar_parameters=[0.2, 0.0, -0.5]).double()
    e = [math.exp(w) for w in (0.2, 0.0, -0.5)]
    normed = []
    for h in layers:
        values = h[mask.bool()]  # (unmasked positions, dim): one mean and variance per layer
        normed.append((h - values.mean()) / (values.var(unbiased=False) + 1e-12).sqrt())
    expected = sum(ej / sum(e) * h for ej, h in zip(e, normed, strict=True))
    torch.testing.assert_close(mix(layers, mask), expected)
    changed = [h.clone() for h in layers]
    changed[0][1, 3] += 100.0  # a padded value moves nothing at the real positions
    torch.testing.assert_close(mix(changed, mask)[mask.bool()], expected[mask.bool()])
    with pytest.raises(ConfigError, match="needs the mask"):
        mix(layers)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_scalar_mix_gradients_match_finite_differences(layer_norm):
    layers, mask = layers_and_mask()
    mix = ScalarMix(3, do_layer_norm=layer_norm).double()

    def mixed(w, gamma, *hs):
        return functional_call(mix, {"scalar_parameters": w, "gamma": gamma}, (list(hs), mask))

    inputs = (torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True),
              torch.tensor(1.2, dtype=torch.float64, requires_grad=True),
              *(h.requires_grad_() for h in layers))
    assert torch.autograd.gradcheck(mixed, inputs)
    mix(layers, mask).sum().backward()
    assert mix.gamma.grad is not None and mix.scalar_parameters.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- folders, task


def test_save_and_load_give_the_same_model_and_words(tmp_path):
    vocab = vocabulary()
    model = tiny_model(vocab_size=len(vocab))
    model.set_vocabulary(vocab)
    model.save_pretrained(tmp_path / "elmo")
    assert (tmp_path / "elmo" / "vocab.txt").read_text().split("\n")[:3] == [BOS, EOS, UNK]
    loaded = ElmoBiLM.from_pretrained(tmp_path / "elmo").eval()
    assert loaded.vocabulary.words == vocab.words
    hub = wxb.from_pretrained(tmp_path / "elmo").eval()  # the registry finds the family
    assert type(hub) is ElmoBiLM and hub.vocabulary.words == vocab.words
    b = batch()
    with torch.no_grad():
        want = model(**b)
        for other in (loaded, hub):
            got = other(**b)
            assert torch.equal(got.logits_forward, want.logits_forward)
            assert torch.equal(got.logits_backward, want.logits_backward)
    with pytest.raises(ConfigError, match="vocabulary has 11 words and the softmax 20"):
        tiny_model(vocab_size=20).set_vocabulary(vocab)


def test_a_bad_model_value_is_one_line():
    cases = [({"filters": [[0, 4]]}, "ElmoConfig.filters must be"),
             ({"activation": "gelu"}, "unknown ElmoConfig.activation 'gelu'"),
             ({"dropout": 1.5}, r"ElmoConfig.dropout must be in \[0, 1\)"),
             ({"hidden_size": "big"}, "ElmoConfig.hidden_size must be")]
    for fields, message in cases:
        with pytest.raises(ConfigError, match=message) as error:
            ElmoConfig.from_dict({**TINY, **fields})
        assert "\n" not in str(error.value)


def synthetic_corpus(path, n=300):
    """A small grammar both directions can learn: the ADJ NOUN VERB a NOUN ."""
    rng = random.Random(0)
    nouns, verbs, adjectives = ["cat", "dog", "bird", "fish"], ["sees", "likes"], ["big", "red"]
    lines = [f"the {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} a "
             f"{rng.choice(nouns)} ." for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path, **data):
    return {"data": {"corpus": [str(synthetic_corpus(tmp_path / "corpus.txt"))],
                     "min_count": 1, "validation_fraction": 0.1, **data},
            "model": dict(TINY),
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 40,
                         "learning_rate": 1e-2, "per_device_train_batch_size": 16,
                         "eval_strategy": "no", "logging_steps": 10, "disable_tqdm": True,
                         "plot_loss": False},
            "expected": {"metric": "perplexity_forward", "at_most": 8.0}}


def test_pretraining_lowers_both_perplexities_and_the_folder_evaluates_again(tmp_path):
    result = train_bilm(config(tmp_path))
    before, after = result["before"], result["metrics"]
    # 14 words: about 14 before training; the grammar leaves 2 to 4 choices at most words.
    assert before["perplexity_forward"] > 10 and before["perplexity_backward"] > 10
    assert after["perplexity_forward"] < 0.5 * before["perplexity_forward"]
    assert after["perplexity_backward"] < 0.5 * before["perplexity_backward"]
    assert after["perplexity"] == pytest.approx(math.exp(after["eval_loss"]), rel=1e-3)
    assert result["met"] is True and result["steps"] == 40
    assert result["corpus"]["vocab_size"] == 14 and result["corpus"]["sentences"] == {
        "train": 270, "validation": 30}
    assert json.loads((tmp_path / "run" / "result.json").read_text())["metrics"] == after
    # The folder alone gives the same validation perplexity (its words are in vocab.txt).
    model = ElmoBiLM.from_pretrained(result["model_dir"])
    lines = (tmp_path / "corpus.txt").read_text().splitlines()
    sentences = [line.split() for line in lines]
    _, validation = split(sentences, 0.1, 0)
    again = evaluate_bilm(model, SentenceDataset(validation, model.vocabulary, CHARS))
    assert again == pytest.approx(after, rel=1e-4)


def test_a_bad_task_config_is_one_line_before_any_work(tmp_path):
    cases = [({"data": {"corpus": ["x.txt"], "validation_fraction": 1.5}},
              "data.validation_fraction must be between 0 and 1"),
             ({"data": {"min_count": 1}}, "data: corpus is required"),
             ({"data": {"corpus": "x.txt"}, "model": {"hidden_sizee": 8}},
              "unknown elmo config field 'hidden_sizee'"),
             ({"data": {"corpus": "x.txt"}, "model": {"vocab_size": 8}},
              "model.vocab_size is the vocabulary's size"),
             ({"data": {"corpus": "x.txt"}, "model": {"filters": [[99, 2]]}},
              "ElmoConfig.filters must be")]
    for values, message in cases:
        values["training"] = {"output_dir": str(tmp_path / "run")}
        with pytest.raises(ConfigError, match=message) as error:
            train_bilm(values)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="does not exist"):
        train_bilm({"data": {"corpus": [str(tmp_path / "missing.txt")]},
                    "training": {"output_dir": str(tmp_path / "run")}})
