"""Speculative decoding with ``fs.verify``: acceptance rates, and exact mode's guarantee.

A toy target model gives logits from the last token of the context (a fixed random
table); the drafter's logits are the target's plus Gaussian noise of scale ``noise``
(the knob: 0 is a perfect drafter, large is a poor one). The example

1. prints, for a few noise levels, how often each method accepts a draft
   (``"rejection"``: the standard rule; ``"exact"``: accept iff the draft equals the
   plain draw at that position), next to the rejection rule's theoretical rate
   sum(min(p, q));
2. decodes a sequence plainly (``fs.sample`` token by token) and speculatively
   (K drafts from the drafter, then ``fs.verify(method="exact")``) and checks that the
   two are the same, token for token.

Runs offline in a few seconds::

    python examples/speculative.py
"""

from __future__ import annotations

import numpy as np

import fastsample as fs

V = 16          # small vocabulary: many requests per second, sharp statistics
K = 4           # drafts per verification
SAMPLING = {"temperature": 0.9, "top_k": 8, "top_p": 0.95}
TABLE = (np.random.default_rng(0).standard_normal((V, V)) * 2.0).astype(np.float32)


def target_logits(context):
    """The toy target model: logits of the next token from the last one."""
    return TABLE[context[-1] if len(context) else 0]


def drafter_logits(context, noise, rng):
    return target_logits(context) + noise * rng.standard_normal(V).astype(np.float32)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def acceptance_rates(noise, requests=4000, seed=1):
    """Per-draft acceptance of both methods over ``requests`` independent requests."""
    rng = np.random.default_rng(seed)
    last = rng.integers(0, V, requests)
    target = np.empty((requests, K + 1, V), np.float32)
    q = np.empty((requests, K, V), np.float32)
    drafts = np.empty((requests, K), np.int64)
    for b in range(requests):
        ctx = [int(last[b])]
        for j in range(K + 1):
            target[b, j] = target_logits(ctx)
            if j == K:
                break
            q[b, j] = softmax(drafter_logits(ctx, noise, rng))
            drafts[b, j] = rng.choice(V, p=q[b, j] / q[b, j].sum())
            ctx.append(int(drafts[b, j]))
    seeds = np.arange(requests)
    rates = {}
    for method in ("rejection", "exact"):
        out = fs.verify(target, drafts, q, method=method, seed=seeds, **SAMPLING)
        rates[method] = out.num_accepted.mean() / K
    # the rejection rule's acceptance of the first draft is sum(min(p_0, q_0))
    chain = fs.SamplerChain([fs.TopK(8), fs.TopP(0.95), fs.Temperature(0.9)])
    p0 = softmax(chain.process(target[:, 0]))
    rates["theory (step 0)"] = np.minimum(p0, q[:, 0]).sum(axis=1).mean()
    rates["rejection (step 0)"] = (fs.verify(target, drafts, q, seed=seeds, **SAMPLING)
                                   .num_accepted >= 1).mean()
    return rates


def decode_plain(steps, seed):
    ctx = [0]
    for pos in range(steps):
        ctx.append(fs.sample(target_logits(ctx), seed=seed, position=pos, **SAMPLING))
    return ctx[1:]


def decode_speculative(steps, seed, noise):
    """Draft K tokens greedily from the drafter, verify them exactly, keep what is
    accepted plus the emitted token; returns the tokens and the verification calls."""
    rng = np.random.default_rng(seed)
    ctx, calls = [0], 0
    while len(ctx) - 1 < steps:
        drafts, dctx = [], list(ctx)
        for _ in range(K):
            drafts.append(int(np.argmax(drafter_logits(dctx, noise, rng))))
            dctx.append(drafts[-1])
        # the target scores all K+1 positions in one pass (here: one call each)
        target = np.stack([target_logits(ctx + drafts[:j]) for j in range(K + 1)])[None]
        out = fs.verify(target, np.array([drafts]), method="exact", seed=seed,
                        position=len(ctx) - 1, **SAMPLING)
        ctx.extend(int(t) for t in out.tokens[0, :out.num_emitted[0]])
        calls += 1
    return ctx[1:steps + 1], calls


def main():
    print(f"acceptance per draft (V={V}, K={K}, {SAMPLING}):")
    print(f"{'noise':>6} {'rejection':>10} {'exact':>8} {'rej. step 0':>12} {'theory':>8}")
    for noise in (0.0, 0.5, 1.0, 2.0, 4.0):
        r = acceptance_rates(noise)
        print(f"{noise:>6} {r['rejection']:>10.3f} {r['exact']:>8.3f} "
              f"{r['rejection (step 0)']:>12.3f} {r['theory (step 0)']:>8.3f}")
    steps, seed = 200, 7
    plain = decode_plain(steps, seed)
    for noise in (0.5, 2.0):
        spec, calls = decode_speculative(steps, seed, noise)
        same = spec == plain
        print(f"exact speculative decoding, noise {noise}: {steps} tokens in {calls} "
              f"verifications; identical to plain decoding: {same}")
        assert same


if __name__ == "__main__":
    main()
