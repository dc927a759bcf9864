"""Structured output: JSON that follows a schema, with llguidance and fastsample.

Each step, llguidance's matcher fills a packed int32 bitmask of the tokens the schema
allows next, fastsample draws with it (the fused kernel reads the bitmask in its first
pass over the logits), and the matcher consumes the token.

Everything runs offline in a few seconds: a byte-level BPE tokenizer is trained on a
few JSON records, and the "model" has memorised the same records (a fifth of
them break the schema) and adds seeded noise. Needs the grammar extra::

    pip install 'fastsample[grammar]'
    python examples/structured_output.py
"""

from __future__ import annotations

import json

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

import fastsample as fs
from fastsample.integrations import llguidance as fsg

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 12},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "role": {"enum": ["admin", "editor", "viewer"]},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 10},
                      "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "role", "languages"],
    "additionalProperties": False,
}
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LANGUAGES = ["python", "c", "rust", "lisp", "fortran", "go", "ocaml"]


def corpus(n=300, seed=0):
    """JSON records, about one in five outside the schema (age, role, name, list length).

    The tokenizer is trained on them and the stand-in model has memorised them, so
    left to itself it would also write the invalid ones.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        bad = rng.random() < 0.2
        name = str(rng.choice(NAMES)) + ("-Montgomery" if bad and rng.random() < 0.3 else "")
        out.append(json.dumps({
            "name": name,
            "age": int(rng.integers(1, 120) if bad else rng.integers(18, 100)),
            "role": str(rng.choice(["admin", "editor", "viewer"] + ["owner"] * bad)),
            "languages": [str(x) for x in rng.choice(LANGUAGES, rng.integers(1, 6 if bad else 4),
                                                     replace=False)]}))
    return out


def valid(obj):
    """SCHEMA, checked by hand."""
    return (isinstance(obj, dict) and set(obj) == set(SCHEMA["required"])
            and isinstance(obj["name"], str) and 2 <= len(obj["name"]) <= 12
            and type(obj["age"]) is int and 18 <= obj["age"] <= 99
            and obj["role"] in ("admin", "editor", "viewer")
            and isinstance(obj["languages"], list) and 1 <= len(obj["languages"]) <= 3
            and all(isinstance(x, str) and len(x) <= 10 for x in obj["languages"]))


def parses_and_validates(data):
    try:
        return valid(json.loads(data))
    except ValueError:
        return False


def train_tokenizer(texts):
    """A byte-level BPE: the 256 byte tokens, ``<|eos|>`` (id 0), and merges."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return tok


class MemorisingModel:
    """Next-token logits from the longest recent context seen in the corpus.

    For the last 1..16 bytes of the text so far (longest first), find where the corpus
    continues them and favour the tokens that spell those continuations (a
    variable-order Markov model over bytes), plus seeded noise per row and position.
    ``vocab_size`` may exceed the tokenizer's, like a model's padded embedding; the
    bitmask rules the padding out.
    """

    def __init__(self, tok, texts, vocab_size, seed=0):
        self.tok, self.V, self.seed = tok, vocab_size, seed
        self.blob = b"\n" + b"\n".join(t.encode() for t in texts) + b"\n"
        pieces = {i: tok.decode_bytes([i]) for i in range(tok.vocab_size)}
        self.ids = {p: i for i, p in pieces.items() if p and not tok.is_special_token(i)}

    def _row(self, text):
        logits = np.zeros(self.V, np.float32)
        context = b"\n" + text
        for k in range(min(16, len(context)), 0, -1):
            suffix, hits, at = context[-k:], 0, self.blob.find(context[-k:])
            while at >= 0 and hits < 200:
                rest = self.blob[at + k:at + k + 12]
                for n in range(1, len(rest) + 1):   # every token spelling a prefix of rest
                    i = self.ids.get(rest[:n])
                    if i is not None:
                        logits[i] += 0.5 * n
                hits += 1
                at = self.blob.find(suffix, at + 1)
            if hits:   # the continuations well above the noise, the rest at 0
                return np.where(logits > 0, 6.0 + 2.0 * np.log1p(logits), 0.0)
        return logits

    def __call__(self, rows, sequences):
        out = np.stack([self._row(self.tok.decode_bytes(s)) for s in sequences])
        for i, (r, s) in enumerate(zip(rows, sequences)):
            out[i] += np.random.default_rng([self.seed, r, len(s)]).standard_normal(self.V)
        return out


def main():
    texts = corpus()
    hf_tok = train_tokenizer(texts)
    V = hf_tok.get_vocab_size() + 7       # a padded model vocabulary
    tok = fsg.tokenizer(hf_tok, eos_token=hf_tok.token_to_id("<|eos|>"), vocab_size=V)
    model = MemorisingModel(tok, texts, V)
    seeds = np.arange(6)
    # no free whitespace; the separators of json.dumps, as in the records
    options = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    # 1. The whole loop: one matcher per request, fastsample's canonical draw.
    matchers = [fsg.matcher(tok, json_schema=SCHEMA, json_options=options) for _ in seeds]
    sampler = {"temperature": 0.6, "top_p": 0.9, "min_p": 0.05}
    results = fsg.generate(model, matchers, sampler=sampler, seed=seeds, max_tokens=128)
    for seed, r in zip(seeds, results):
        text = tok.decode_bytes(r.tokens)
        assert parses_and_validates(text)
        print(f"seed {seed}: {len(r.tokens):2d} tokens, {r.stop_reason}: {text.decode()}")

    # 2. The same as an engine writes it: fill, draw with the bitmask, consume.
    for m in matchers:
        m.reset()
    bitmask = fsg.allocate_bitmask(len(seeds), V)
    sequences = [[] for _ in seeds]
    for step in range(128):
        running = [b for b, m in enumerate(matchers) if not m.is_stopped()]
        if not running:
            break
        logits = model(running, [sequences[b] for b in running])
        rows = fsg.fill_bitmask([matchers[b] for b in running], bitmask)
        tokens = fs.sample(logits, bitmask=bitmask, bitmask_rows=rows, seed=seeds[running],
                           position=step, **sampler)
        fsg.consume([matchers[b] for b in running], tokens)
        for b, t in zip(running, tokens):
            sequences[b].append(int(t))
    assert sequences == [r.tokens for r in results]
    print("the hand-written loop drew the same tokens")

    # 3. Any chain: penalties, DRY, truncations; the bitmask goes before every stage.
    chain = fs.SamplerChain([fs.Penalties(repeat=1.1, last_n=32), fs.DRY(0.8),
                             fs.TopK(40), fs.MinP(0.05), fs.Temperature(0.7)], seed=seeds)
    out = fsg.generate(model, [fsg.matcher(tok, json_schema=SCHEMA, json_options=options)
                               for _ in seeds], sampler=chain, max_tokens=128)
    print("with a chain:", tok.decode_bytes(out[0].tokens).decode())

    # 4. The same model without a grammar (rows with matcher None): the first line of
    # each output, checked against the schema.
    many = np.arange(24)
    free = fsg.generate(model, [None] * len(many), sampler=sampler, seed=many, max_tokens=40)
    lines = [tok.decode_bytes(r.tokens).split(b"\n")[0] for r in free]
    bad = sum(not parses_and_validates(line) for line in lines)
    held = fsg.generate(model, [fsg.matcher(tok, json_schema=SCHEMA, json_options=options)
                                for _ in many], sampler=sampler, seed=many, max_tokens=128)
    good = sum(parses_and_validates(tok.decode_bytes(r.tokens)) for r in held)
    example = next((x for x in lines if not parses_and_validates(x)), b"-")
    print(f"without the grammar {bad} of {len(many)} outputs break the schema, e.g. "
          f"{example.decode(errors='replace')}; with it {good} of {len(many)} are valid")


if __name__ == "__main__":
    main()
