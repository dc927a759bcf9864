"""transformers integration (issue #7): fastsample chains inside ``model.generate()``.

End to end with a tiny randomly initialised GPT-2 built from a config (no download),
and mask-for-mask against transformers' own warpers where the rules coincide.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

import fastsample as fs
from fastsample.integrations.transformers import (
    FastsampleDraw,
    FastsampleLogitsProcessor,
    stage_processors,
)

VOCAB = 1000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=VOCAB,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def _prompt(B=3, L=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (B, L), generator=g)


def _generate(model, ids, processors, **kw):
    with torch.no_grad():
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
            logits_processor=LogitsProcessorList(processors), return_dict_in_generate=True,
            output_logits=True, output_scores=True, **kw)


# ---------------------------------------------------------------- generate() end to end


def _draw_chain(backend):
    return fs.SamplerChain([fs.Penalties(repeat=1.5, presence=0.5, last_n=-1), fs.TopK(100),
                            fs.Temperature(1.2), fs.Mirostat(tau=np.array([3.0, 5.0, 7.0]), eta=0.5)],
                           seed=[11, 12, 13], backend=backend)


def test_generate_with_fastsample_draw(model, backend):
    """generate() picks exactly the tokens that SamplerChain.sample draws."""
    ids = _prompt()
    L = ids.shape[1]
    out = _generate(model, ids, [FastsampleDraw(_draw_chain(backend))], do_sample=False)
    seq = out.sequences
    assert seq.shape == (3, L + 10)
    replay = _draw_chain("numpy")
    for i, raw in enumerate(out.logits):
        tokens = replay.sample(raw.numpy(), history=seq[:, :L + i].numpy(), position=L + i)
        np.testing.assert_array_equal(seq[:, L + i].numpy(), tokens, err_msg=f"step {i}")
        # the scores transformers saw: 0 at the drawn token, -inf elsewhere
        s = out.scores[i].numpy()
        assert (np.isfinite(s).sum(axis=1) == 1).all() and (s[np.arange(3), tokens] == 0).all()
    # Mirostat's mu moved, and the processor resets it for a new generate() call.
    again = _generate(model, ids, [FastsampleDraw(_draw_chain(backend))], do_sample=False)
    proc = FastsampleDraw(_draw_chain(backend))
    first = _generate(model, ids, [proc], do_sample=False)
    second = _generate(model, ids, [proc], do_sample=False)
    assert torch.equal(again.sequences, seq)
    assert torch.equal(first.sequences, seq) and torch.equal(second.sequences, seq)
    greedy = torch.stack([raw.argmax(-1) for raw in out.logits], dim=1)
    assert not torch.equal(seq[:, L:], greedy)  # the draw is fastsample's, not the argmax


def test_generate_with_fastsample_chain(model, backend):
    """do_sample=True with a fastsample chain: transformers samples from its output."""
    chain = fs.SamplerChain([fs.Penalties(repeat=1.3, last_n=4), fs.TopK(40), fs.TopP(0.9),
                             fs.MinP(0.02), fs.Temperature(0.8)], backend=backend)
    ids = _prompt(seed=1)
    L = ids.shape[1]
    torch.manual_seed(5)
    out = _generate(model, ids, [FastsampleLogitsProcessor(chain)], do_sample=True,
                    temperature=1.0, top_k=0, top_p=1.0)
    seq = out.sequences
    for i, (raw, scores) in enumerate(zip(out.logits, out.scores)):
        ref = fs.SamplerChain(chain.stages, backend="numpy").process(
            raw.numpy(), history=seq[:, :L + i].numpy(), position=L + i)
        got = scores.numpy()
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref), err_msg=f"step {i}")
        fin = np.isfinite(ref)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=0, atol=1e-5 * max(1, np.abs(ref[fin]).max()))
        assert np.isfinite(got[np.arange(3), seq[:, L + i].numpy()]).all()
        assert (np.isfinite(got).sum(axis=1) < VOCAB).all()  # the chain did truncate


def test_stage_processors_compose_like_the_chain(backend):
    stages = [fs.Penalties(repeat=1.4, frequency=0.1), fs.DRY(0.9, allowed_length=1),
              fs.TopK(30), fs.TopP(0.8), fs.Temperature(0.7)]
    rng = np.random.default_rng(2)
    scores = torch.from_numpy(rng.standard_normal((4, 200)).astype(np.float32) * 3)
    ids = torch.from_numpy(rng.integers(0, 200, (4, 25)))
    whole = FastsampleLogitsProcessor(stages, backend=backend)(ids, scores)
    step = scores
    for proc in stage_processors(stages, backend=backend):
        step = proc(ids, step)
    assert torch.equal(torch.isinf(step), torch.isinf(whole))
    torch.testing.assert_close(step, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_processor_keeps_the_scores_dtype(dtype, backend):
    rng = np.random.default_rng(3)
    scores = torch.from_numpy(rng.standard_normal((3, 100)).astype(np.float32)).to(getattr(torch, dtype))
    ids = torch.zeros(3, 4, dtype=torch.long)
    out = FastsampleLogitsProcessor([fs.TopK(10), fs.Temperature(0.5)], backend=backend)(ids, scores)
    assert out.dtype == scores.dtype
    ref = fs.SamplerChain([fs.TopK(10), fs.Temperature(0.5)], backend="numpy").process(scores.float().numpy())
    np.testing.assert_array_equal(torch.isinf(out).numpy(), np.isinf(ref))


def test_draw_processor_flagged_rows_keep_their_scores(backend):
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    scores[1] = float("-inf")
    proc = FastsampleDraw([fs.TopK(5)], on_invalid="flag", backend=backend)
    out = proc(torch.zeros(3, 2, dtype=torch.long), scores)
    assert torch.equal(out[1], scores[1])
    assert (torch.isfinite(out[[0, 2]]).sum(dim=1) == 1).all()


# ---------------------------------------------------------------- masks vs transformers' warpers


def _random_scores(B=128, V=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, V)) * rng.uniform(0.5, 4.0, (B, 1))
    x[rng.random((B, V)) < 0.05] = -np.inf  # some tokens already masked
    return torch.from_numpy(x.astype(np.float32))


def _near_boundary(x, stage):
    """Rows where the two rules can differ only by rounding: the mass or the min-p
    threshold lands within 1e-5 of a token (float32 torch vs float64 fastsample,
    and fastsample's 1e-6 mass tolerance)."""
    x = x.numpy().astype(np.float64)
    if isinstance(stage, fs.TopP):
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        cum = np.cumsum(-np.sort(-p, axis=1), axis=1)
        return (np.abs(cum - stage.p) < 1e-5).any(axis=1)
    if isinstance(stage, fs.MinP):
        thr = x.max(axis=1, keepdims=True) + np.log(stage.p)
        return (np.abs(x - thr) < 1e-5).any(axis=1)
    return np.zeros(x.shape[0], dtype=bool)


WARPERS = [
    (fs.Temperature(0.7), TemperatureLogitsWarper(0.7)),
    (fs.Temperature(1.9), TemperatureLogitsWarper(1.9)),
    (fs.TopK(1), TopKLogitsWarper(1)),
    (fs.TopK(40), TopKLogitsWarper(40)),
    (fs.TopK(3, min_keep=8), TopKLogitsWarper(3, min_tokens_to_keep=8)),
    (fs.TopK(5000), TopKLogitsWarper(5000)),
    (fs.TopP(0.9), TopPLogitsWarper(0.9)),
    (fs.TopP(0.3), TopPLogitsWarper(0.3)),
    (fs.TopP(0.2, min_keep=5), TopPLogitsWarper(0.2, min_tokens_to_keep=5)),
    (fs.MinP(0.05), MinPLogitsWarper(0.05)),
    (fs.MinP(0.5), MinPLogitsWarper(0.5)),
    (fs.MinP(0.9, min_keep=4), MinPLogitsWarper(0.9, min_tokens_to_keep=4)),
]


@pytest.mark.parametrize("case", range(len(WARPERS)), ids=[repr(w[0]) for w in WARPERS])
def test_masks_match_transformers_warpers(case, backend):
    ours, theirs = WARPERS[case]
    scores = _random_scores(seed=case)
    ids = torch.zeros(scores.shape[0], 1, dtype=torch.long)
    got = FastsampleLogitsProcessor(ours, backend=backend)(ids, scores.clone()).numpy()
    want = theirs(ids, scores.clone()).numpy()
    skip = _near_boundary(scores, ours)
    assert skip.mean() < 0.05, "too many boundary rows for the comparison to mean much"
    keep = ~skip
    np.testing.assert_array_equal(np.isneginf(got[keep]), np.isneginf(want[keep]))
    fin = np.isfinite(want[keep])
    np.testing.assert_allclose(got[keep][fin], want[keep][fin], rtol=1e-6, atol=0)
    truncates = not isinstance(ours, fs.Temperature) and getattr(ours, "k", 0) < scores.shape[1]
    if truncates:
        assert np.isneginf(got).sum() > np.isneginf(scores.numpy()).sum()


def test_ties_at_the_cut_are_kept_where_transformers_may_cut():
    """A documented difference: fastsample keeps every token tied with the last kept
    one (TopP, MinP's min_keep); transformers' sort may keep only some of them."""
    row = torch.tensor([[3.0, 1.0, 1.0, 1.0, 1.0, 0.0, -1.0]])
    ids = torch.zeros(1, 1, dtype=torch.long)
    ours = FastsampleLogitsProcessor(fs.TopP(0.8))(ids, row.clone())
    theirs = TopPLogitsWarper(0.8)(ids, row.clone())
    assert torch.isfinite(ours).sum() == 5  # the max and all four tied tokens
    assert torch.isfinite(theirs).sum() <= 5
    assert bool((torch.isfinite(theirs) <= torch.isfinite(ours)).all())
