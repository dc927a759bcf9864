"""Grammar-constrained generation with llguidance (issue #14 item 5).

A small byte-level BPE tokenizer is trained offline with ``tokenizers`` (every one
of the 256 bytes is a token, plus an EOS token) and handed to llguidance; a stand-in
"model" gives seeded random logits per row and position. Every output of a JSON
schema must parse and validate against the schema, the tokens must be the same on
every CPU backend for the same seeds, and the bitmask llguidance fills must mean, bit
for bit, what fastsample reads (spec §10, docs/spec.md).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

llguidance = pytest.importorskip(
    "llguidance", reason="llguidance is not installed (pip install 'fastsample[grammar]')")
tokenizers = pytest.importorskip(
    "tokenizers", reason="tokenizers is not installed (pip install 'fastsample[grammar]')")

import fastsample as fs  # noqa: E402
from fastsample.integrations import llguidance as fsg  # noqa: E402

EOS_TEXT = "<|eos|>"
V = 333            # the model's vocabulary: wider than the tokenizer's, not a multiple of 32
SEEDS = list(range(24))
COLORS = ["red", "green", "blue", "light gray"]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "color": {"enum": COLORS},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                 "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "color", "tags"],
    "additionalProperties": False,
}
COMPACT = {"whitespace_flexible": False}


def _valid(obj):
    """SCHEMA, checked by hand (no jsonschema dependency)."""
    return (isinstance(obj, dict) and set(obj) == {"name", "age", "color", "tags"}
            and isinstance(obj["name"], str) and 1 <= len(obj["name"]) <= 8
            and type(obj["age"]) is int and 18 <= obj["age"] <= 99
            and obj["color"] in COLORS
            and isinstance(obj["tags"], list) and 1 <= len(obj["tags"]) <= 3
            and all(isinstance(t, str) and len(t) <= 5 for t in obj["tags"]))


def _corpus():
    rng = np.random.default_rng(0)
    words = ["alice", "bob", "carol", "dave", "x", "yy", "name", "age", "color", "tags"]
    return [json.dumps({"name": str(rng.choice(words)), "age": int(rng.integers(0, 120)),
                        "color": str(rng.choice(COLORS)),
                        "tags": [str(w) for w in rng.choice(words, rng.integers(0, 4))]})
            for _ in range(200)]


@pytest.fixture(scope="module")
def hf_tokenizer():
    """A byte-level BPE trained on JSON lines: the 256 byte tokens, EOS (id 0), merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=[EOS_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    return tok


@pytest.fixture(scope="module")
def tok(hf_tokenizer):
    return fsg.tokenizer(hf_tokenizer, eos_token=hf_tokenizer.token_to_id(EOS_TEXT),
                         vocab_size=V)


def _model(seeds):
    """Seeded random logits for (row seed, position): a deterministic stand-in model."""
    def model(rows, sequences):
        return np.stack([2.0 * np.random.default_rng([seeds[r], len(s)]).standard_normal(V)
                         for r, s in zip(rows, sequences)]).astype(np.float32)
    return model


def _decode(tok, tokens):
    if tokens and tokens[-1] == tok.eos_token:
        tokens = tokens[:-1]
    return tok.decode_bytes(tokens)


def test_tokenizer_has_every_byte_and_eos(hf_tokenizer, tok):
    assert hf_tokenizer.get_vocab_size() < V  # the model is wider than the tokenizer
    assert tok.vocab_size == V and tok.eos_token == 0 and tok.is_special_token(0)
    from tokenizers import pre_tokenizers

    vocab = hf_tokenizer.get_vocab()
    assert all(ch in vocab for ch in pre_tokenizers.ByteLevel.alphabet())  # 256 byte tokens
    single = sorted(tok.decode_bytes([t]) for t in range(hf_tokenizer.get_vocab_size())
                    if len(tok.decode_bytes([t])) == 1 and not tok.is_special_token(t))
    # llguidance reads byte 0xff (never in UTF-8) as its special-token marker
    assert single == [bytes([i]) for i in range(255)]


SAMPLERS = {
    "plain": None,
    "canonical": {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "min_p": 0.02},
    "chain": "chain",
}


def _sampler(kind):
    if kind == "chain":   # a fresh chain per run (generate resets it anyway)
        return [fs.Penalties(repeat=1.2, last_n=16), fs.TopK(50), fs.TopP(0.9),
                fs.Temperature(0.8)]
    return SAMPLERS[kind]


_reference = {}


def _run(tok, kind, backend):
    matchers = [fsg.matcher(tok, json_schema=SCHEMA, json_options=COMPACT) for _ in SEEDS]
    out = fsg.generate(_model(SEEDS), matchers, sampler=_sampler(kind),
                       seed=np.array(SEEDS), max_tokens=200, backend=backend)
    return [g.tokens for g in out], [g.stop_reason for g in out]


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_json_schema_outputs_validate_and_agree_across_backends(tok, kind, backend):
    if kind not in _reference:
        _reference[kind] = _run(tok, kind, "numpy")
    want, _ = _reference[kind]
    got, reasons = _run(tok, kind, backend)
    for tokens, reason in zip(got, reasons):
        assert reason in ("EndOfSentence", "NoExtension"), reason
        assert _valid(json.loads(_decode(tok, tokens))), _decode(tok, tokens)
    assert got == want
    assert len({tuple(t) for t in got}) == len(SEEDS)  # the seeds give different outputs


def test_a_row_does_not_depend_on_the_batch(tok):
    batch, _ = _run(tok, "canonical", "numba")
    for b in (0, 5, 17):
        one = fsg.generate(_model([SEEDS[b]]), fsg.matcher(tok, json_schema=SCHEMA,
                                                           json_options=COMPACT),
                           sampler=SAMPLERS["canonical"], seed=SEEDS[b], max_tokens=200,
                           backend="numba")
        assert isinstance(one, fsg.Generated)
        assert one.tokens == batch[b]
    assert batch[0] != batch[5]


def test_bitmask_bits_are_llguidance_tokens(tok, hf_tokenizer, backend):
    """Bit v % 32 of word v // 32 is token v: fs.apply_token_bitmask masks exactly
    what llguidance's own numpy masking does, and only tokens the matcher accepts are
    left (llguidance may leave fewer: the canonical token of forced bytes)."""
    from llguidance.numpy import apply_token_bitmask_inplace

    n = hf_tokenizer.get_vocab_size()
    m = fsg.matcher(tok, json_schema=SCHEMA, json_options=COMPACT)
    tokens = fsg.generate(_model([7]), fsg.matcher(tok, json_schema=SCHEMA,
                                                   json_options=COMPACT),
                          seed=7, backend="numpy").tokens
    bitmask = fsg.allocate_bitmask(1, V)
    sizes = set()
    for step, t in enumerate(tokens):
        assert fsg.fill_bitmask([m], bitmask).tolist() == [0]
        x = np.zeros((1, V), np.float32)
        allowed = np.isfinite(fs.apply_token_bitmask(x, bitmask, backend=backend)[0])
        theirs = x.copy()
        apply_token_bitmask_inplace(theirs, bitmask)
        assert np.array_equal(allowed, np.isfinite(theirs[0])), step
        ids = np.flatnonzero(allowed)
        assert all(m.validate_tokens([v]) == 1 for v in ids) and allowed[t], step
        assert ids.size and ids[-1] < n  # never a token past the trained vocabulary
        sizes.add(ids.size)
        assert m.consume_token(t)
    assert len(sizes) > 3  # the sequence went through several kinds of states


def test_a_row_the_bitmask_empties_is_invalid(tok, backend):
    m = fsg.matcher(tok, regex="[0-9]+")
    bitmask = fsg.allocate_bitmask(2, V)
    rows = fsg.fill_bitmask([m, None], bitmask)
    assert rows.tolist() == [0, -1]
    digits = [v for v in range(V) if m.validate_tokens([v]) == 1]
    x = np.zeros((2, V), np.float32)
    x[0, digits] = -np.inf   # the model itself rules out every token the grammar allows
    with pytest.raises(ValueError, match="row"):
        fs.sample(x, bitmask=bitmask, bitmask_rows=rows, backend=backend)
    tokens = fs.sample(x, bitmask=bitmask, bitmask_rows=rows, on_invalid="flag",
                       backend=backend)
    assert tokens[0] == -1 and 0 <= tokens[1] < V
    chain = fs.SamplerChain([fs.TopK(5)], backend=backend, on_invalid="flag")
    assert chain.sample(x, bitmask=bitmask, bitmask_rows=rows)[0] == -1

    def model(rows, sequences):
        return np.repeat(x[:1], len(rows), axis=0)

    out = fsg.generate(model, fsg.matcher(tok, regex="[0-9]+"), backend=backend,
                       on_invalid="flag")
    assert out.tokens == [] and out.stop_reason == "invalid"
    out = fsg.generate(model, [fsg.matcher(tok, regex="[0-9]+"), None], sampler=[fs.TopK(5)],
                       backend=backend, on_invalid="flag", max_tokens=4)
    assert out[0].stop_reason == "invalid" and out[1].stop_reason == "max_tokens"
    with pytest.raises(ValueError):
        fsg.generate(model, fsg.matcher(tok, regex="[0-9]+"), backend=backend)


def test_regex_lark_max_tokens_and_unconstrained_rows(tok):
    seeds = [3, 4, 5]
    ms = [fsg.matcher(tok, regex=r"[a-z]{2,6}-[0-9]{3}"),
          fsg.matcher(tok, lark='start: "yes" | "no" | "maybe"'),
          None]
    out = fsg.generate(_model(seeds), ms, seed=np.array(seeds), max_tokens=30,
                       backend="numba")
    assert re.fullmatch(r"[a-z]{2,6}-[0-9]{3}", _decode(tok, out[0].tokens).decode())
    assert _decode(tok, out[1].tokens) in (b"yes", b"no", b"maybe")
    assert out[2].stop_reason == "max_tokens" and len(out[2].tokens) == 30
    short = fsg.generate(_model([0]), fsg.matcher(tok, json_schema=SCHEMA), max_tokens=3)
    assert short.stop_reason == "max_tokens" and len(short.tokens) == 3
    assert fsg.generate(_model([0]), [], max_tokens=3) == []


def test_bad_input(tok, hf_tokenizer):
    with pytest.raises(ValueError, match="exactly one"):
        fsg.matcher(tok, regex="a", lark='start: "a"')
    with pytest.raises(ValueError, match="exactly one"):
        fsg.matcher(tok)
    with pytest.raises(ValueError, match="does not compile"):
        fsg.matcher(tok, regex="((")
    with pytest.raises(ValueError, match="json_schema only"):
        fsg.matcher(tok, regex="a", json_options=COMPACT)
    with pytest.raises(ValueError, match="eos_token"):
        fsg.tokenizer(hf_tokenizer)
    with pytest.raises(TypeError, match="tokenizers.Tokenizer"):
        fsg.tokenizer(object(), eos_token=0)
    with pytest.raises(ValueError, match="vocab_size"):
        fsg.tokenizer(hf_tokenizer, eos_token=0, vocab_size=0)
    m = fsg.matcher(tok, regex="[0-9]+")
    with pytest.raises(ValueError, match="words"):
        fsg.fill_bitmask([m], fsg.allocate_bitmask(1, V + 64))
    with pytest.raises(TypeError, match="int32"):
        fsg.fill_bitmask([m], np.zeros((1, 11), np.uint8))
    with pytest.raises(ValueError, match="rows"):
        fsg.fill_bitmask([m, m], fsg.allocate_bitmask(1, V))
    with pytest.raises(ValueError, match="C-contiguous"):
        fsg.fill_bitmask([m], fsg.allocate_bitmask(2, V)[:, ::-1][:1])
    letter = tok.tokenize_str("a")[0]
    with pytest.raises(RuntimeError, match="refused"):
        fsg.consume([m], [letter])
    with pytest.raises(ValueError, match="max_tokens"):
        fsg.generate(_model([0]), fsg.matcher(tok, regex="a"), max_tokens=-1)
    with pytest.raises(TypeError, match="sampler"):
        fsg.generate(_model([0]), fsg.matcher(tok, regex="a"), sampler="greedy")
    with pytest.raises(ValueError, match="model returned"):
        fsg.generate(lambda rows, seqs: np.zeros(V, np.float32),
                     fsg.matcher(tok, regex="a"))


def test_the_example_runs(capsys):
    import runpy
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "structured_output.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "the hand-written loop drew the same tokens" in out
    assert "with it 24 of 24 are valid" in out
