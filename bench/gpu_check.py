"""One-shot check of the cuda backend on a machine with an NVIDIA GPU.

    python bench/gpu_check.py            # GPU + torch: V = 128256, B = 64 and 256
    python bench/gpu_check.py --sim      # CUDA simulator, tiny shapes (the script's logic)
    python bench/gpu_check.py --ptx      # no GPU: compile every kernel to PTX for sm_90

Correctness: tokens of ``fs.sample`` on device logits (torch.cuda tensors) against the
numpy reference, and the masks of the canonical chain (``SamplerChain.process``),
copied back; docs/spec.md §12's W10a (Penalties, DRY, W1) and W10b (Penalties, MinP, XTC)
chains over accepted steps, B = 1 and 64; W13's ``fs.verify`` on device logits (both
methods) against the numpy backend; zero mismatches allowed. W13's GPU peer is
FlashInfer's ``chain_speculative_sampling``, timed only where FlashInfer is installed. Timings (median
of repeated, synchronised calls): our fused kernel and the whole ``fs.sample`` call,
a PyTorch sort-based sampler on the same GPU (sort, softmax, cumsum, mask,
``torch.multinomial``: what vLLM and transformers do), the W10a/W10b engine loop
(``chain.sample`` + ``chain.accept`` per token) and its host part (DRY's edits),
``softmax`` / ``topk`` against torch's, and the copy floor (one device-to-device
copy of the logits). Prints one JSON object; exits 1 on a
mismatch, 2 when the machine cannot run the check (no GPU, no torch, no numba-cuda).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

SIM = "--sim" in sys.argv
if SIM:  # before numba is imported
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np

V_FULL = 128256


def fail(msg, code=2):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(code)


def median_us(fn, sync, reps):
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e6)
    return round(statistics.median(times), 1)


def torch_sampler(torch):
    """The sort-based sampler of vLLM / transformers: temperature, sort, top-k mask,
    softmax, cumsum top-p mask, min-p mask, softmax, multinomial."""

    def sample(logits, k, p, min_p, t):
        x = logits / t[:, None]
        srt, idx = x.sort(dim=-1, descending=True)
        ranks = torch.arange(x.shape[1], device=x.device)[None, :]
        srt = srt.masked_fill(ranks >= k[:, None], float("-inf"))
        probs = srt.softmax(dim=-1)
        cum = probs.cumsum(dim=-1)
        srt = srt.masked_fill(cum - probs > p[:, None], float("-inf"))
        probs = srt.softmax(dim=-1)
        srt = srt.masked_fill(probs < min_p[:, None] * probs[:, :1], float("-inf"))
        choice = torch.multinomial(srt.softmax(dim=-1), 1)
        return idx.gather(-1, choice)[:, 0]

    return sample


# ------------------------------------------------------------------------ correctness


def to_host(a):
    """A torch tensor or numba device array as numpy."""
    return a.cpu().numpy() if hasattr(a, "cpu") else a.copy_to_host()


def check_tokens(fs, to_dev, x, cfg, seeds, positions):
    got = to_host(fs.sample(to_dev(x), seed=seeds, position=positions, **cfg))
    want = fs.sample(x, seed=seeds, position=positions, backend="numpy", **cfg)
    return int((got != want).sum())


def check_masks(fs, to_dev, x, stages):
    out = to_host(fs.SamplerChain(stages, backend="cuda").process(to_dev(x)))
    want = fs.SamplerChain(stages, backend="numpy").process(x)
    fin = np.isfinite(want)
    mask_mismatch = int((np.isneginf(out) != np.isneginf(want)).sum())
    rel = np.abs(out[fin].astype(np.float64) - want[fin]) / np.maximum(1.0, np.abs(want[fin]))
    return mask_mismatch, float(rel.max()) if rel.size else 0.0


def correctness(fs, wl, to_dev, batches, V):
    report = {}
    mismatches = 0
    for B in batches:
        llm = wl.llm_like(B, V, seed=1)
        flat = wl.flat(B, V, seed=2)
        seeds = np.arange(B, dtype=np.uint64) * np.uint64(7919) + np.uint64(1)
        pos = np.arange(B, dtype=np.uint64) + np.uint64(100)
        per_row = wl.per_row_w1_params(B)
        cases = {
            "W1": (llm, {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8}),
            "W4": (llm, per_row),
            "W3": (llm, {"top_p": 0.95}),
            "W5": (llm, {"temperature": 0.8}),
            "W6": (flat, {"top_p": 0.95}),
            "HF": (llm, {"top_k": 50, "top_p": 0.9, "temperature": 0.7,
                         "temperature_last": False}),
        }
        for name, (x, cfg) in cases.items():
            n = check_tokens(fs, to_dev, x, cfg, seeds, pos)
            report[f"tokens_{name}_B{B}"] = n
            mismatches += n
    n = check_split_paths(fs, wl, V)
    report["split_vs_one_block_token_differences"] = n
    mismatches += n
    B = batches[0]
    x = wl.llm_like(B, V, seed=3)
    stages = [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)]
    masks, rel = check_masks(fs, to_dev, x, stages)
    report[f"mask_mismatches_W1_B{B}"] = masks
    report[f"max_rel_err_W1_B{B}"] = rel
    mismatches += masks + int(rel > 1e-5)
    masks, rel = check_masks(fs, to_dev, x, penalty_stages(fs, V)[0])
    report[f"mask_mismatches_penalties_B{B}"] = masks
    report[f"max_rel_err_penalties_B{B}"] = rel
    mismatches += masks + int(rel > 1e-5)
    n = check_penalty_chain(fs, wl, to_dev, B, V)
    report[f"tokens_penalties_3_steps_B{B}"] = n
    mismatches += n
    for B in (1, batches[0]):
        for name in ("W10a", "W10b"):
            tokens, masks = check_w10(fs, wl, to_dev, name, B, V)
            report[f"tokens_{name}_3_steps_B{B}"] = tokens
            report[f"mask_mismatches_{name}_B{B}"] = masks
            mismatches += tokens + masks
    return report, mismatches


def check_split_paths(fs, wl, V):
    """Tokens of the split and one-block paths of the canonical kernel on the same rows
    (they must agree bit for bit): the number that differ, over W1/W3/W5/W6 and HF."""
    ops = fs.registry.load("cuda")
    x = np.concatenate([wl.llm_like(3, V, seed=8), wl.flat(1, V, seed=9)])
    seeds = np.arange(4, dtype=np.uint64) + np.uint64(99)
    pos = np.full(4, 7, np.uint64)
    bad = 0
    for k, p, mp, t, last in ((40, 0.95, 0.05, 0.8, True), (0, 0.95, 0.0, 1.0, True),
                              (0, 1.0, 0.0, 0.8, True), (50, 0.9, 0.0, 0.7, False)):
        a = ops.sample_canonical(x, k, p, mp, t, 1, last, seeds, pos, split=True)
        b = ops.sample_canonical(x, k, p, mp, t, 1, last, seeds, pos, split=False)
        bad += int((np.asarray(a) != np.asarray(b)).sum())
    return bad


def penalty_stages(fs, V):
    """A chain with the device-side stages in front of W1's, and a history for it."""
    rng = np.random.default_rng(11)
    ids = rng.choice(V, 20, replace=False)
    bias = fs.LogitBias((ids, np.concatenate([rng.normal(0, 2, 19), [-np.inf]])))
    stages = [fs.Penalties(repeat=1.1, frequency=0.2, presence=0.1, last_n=64), bias,
              fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)]
    return stages, rng


def check_penalty_chain(fs, wl, to_dev, B, V):
    """Tokens of a Penalties + LogitBias + W1 chain over 3 steps with accept (device
    counts updated incrementally), against the numpy chain: the number that differ."""
    stages, rng = penalty_stages(fs, V)
    gpu = fs.SamplerChain(stages, seed=5, backend="cuda")
    ref = fs.SamplerChain(stages, seed=5, backend="numpy")
    prompt = rng.integers(0, V, (B, 100))
    gpu.load_states([{"history": h} for h in prompt])
    ref.load_states([{"history": h} for h in prompt])
    bad = 0
    for step in range(3):
        x = wl.llm_like(B, V, seed=20 + step)
        got = to_host(gpu.sample(to_dev(x)))
        want = ref.sample(x)
        bad += int((got != want).sum())
        gpu.accept(want)
        ref.accept(want)
    return bad


def w10_stages(fs, name, B):
    """Spec §12's W10a or W10b chain; with B > 1, per-row parameters (W10c)."""
    rng = np.random.default_rng(B)
    def per_row(lo, hi, value):
        return value if B == 1 else rng.uniform(lo, hi, B)
    if name == "W10a":
        return [fs.Penalties(repeat=per_row(1.0, 1.2, 1.1), last_n=64),
                fs.DRY(per_row(0.5, 1.0, 0.8), 1.75, 2, last_n=4096),
                fs.TopK(40), fs.TopP(per_row(0.9, 0.98, 0.95)),
                fs.MinP(per_row(0.02, 0.08, 0.05)), fs.Temperature(per_row(0.7, 0.9, 0.8))]
    return [fs.Penalties(per_row(1.0, 1.1, 1.05), last_n=64), fs.MinP(per_row(0.01, 0.05, 0.02)),
            fs.XTC(per_row(0.3, 0.7, 0.5), per_row(0.05, 0.15, 0.1)),
            fs.Temperature(per_row(0.8, 1.2, 1.0))]


def w10_chain(fs, wl, name, B, V, backend, on_invalid="raise"):
    """A W10 chain with 4096 natural tokens of history per row (spec §12)."""
    chain = fs.SamplerChain(w10_stages(fs, name, B), seed=np.arange(B, dtype=np.uint64) + 7,
                            backend=backend, on_invalid=on_invalid)
    chain.load_states([{"history": wl.natural_history(4096, V, seed=b)} for b in range(B)])
    return chain


def check_w10(fs, wl, to_dev, name, B, V, steps=3):
    """W10a/W10b on cuda against the numpy chain: ``(tokens that differ over the
    steps, mask mismatches of process at the first step)``; the tokens of the numpy
    chain are accepted by both."""
    gpu = w10_chain(fs, wl, name, B, V, "cuda")
    ref = w10_chain(fs, wl, name, B, V, "numpy")
    bad = masks = 0
    for step in range(steps):
        x = wl.llm_like(B, V, seed=40 + step)
        if step == 0:
            out = to_host(gpu.process(to_dev(x)))
            masks = int((np.isneginf(out) != np.isneginf(ref.process(x))).sum())
        want = ref.sample(x)
        bad += int((to_host(gpu.sample(to_dev(x))) != want).sum())
        gpu.accept(want)
        ref.accept(want)
    return bad, masks


def w10_timings(fs, wl, ops, to_dev, sync, B, V, reps):
    """The engine loop of W10a/W10b (``chain.sample`` + ``chain.accept`` per token,
    ``on_invalid="flag"``: no wait inside sample; accept copies B tokens back) and
    its host part: DRY's edits for B histories of 4096 tokens."""
    out = {}
    x = to_dev(wl.llm_like(B, V, seed=4))
    for name in ("W10a", "W10b"):
        chain = w10_chain(fs, wl, name, B, V, "cuda", on_invalid="flag")

        def step(chain=chain):
            chain.accept(chain.sample(x))
        out[f"ours_chain_step_{name}"] = median_us(step, sync, reps)
    dry = w10_stages(fs, "W10a", B)[1]
    hist = [wl.natural_history(4096, V, seed=b) for b in range(B)]
    table = ops.breaker_table(dry.breakers, V)
    out["ours_dry_edits_host_W10a"] = median_us(
        lambda: ops.dry_edits(hist, V, *dry.rows(B), table), sync, reps)
    return out


# ------------------------------------------------------------------------ timings


def timings(fs, wl, ops, torch, cuda, B, V, reps, on_gpu):
    dev_t = "cuda" if on_gpu else "cpu"
    x = wl.llm_like(B, V, seed=4)
    xt = torch.from_numpy(x).to(dev_t)
    d = cuda.as_cuda_array(xt) if on_gpu else cuda.to_device(x)
    params = {k: np.ascontiguousarray(v) for k, v in wl.per_row_w1_params(B).items()}
    dp = {k: cuda.to_device(v) for k, v in params.items()}
    ones = cuda.to_device(np.ones(B, np.int64))
    zeros = cuda.to_device(np.zeros(B, np.int64))
    seeds = cuda.to_device(np.arange(B, dtype=np.uint64))
    pos = cuda.to_device(np.zeros(B, dtype=np.uint64))
    api_in = xt if on_gpu else d

    def sync():
        cuda.synchronize()
        if on_gpu:
            torch.cuda.synchronize()

    out = {}
    out["ours_fs_sample_flag_W4"] = median_us(   # the engine call: no wait inside
        lambda: fs.sample(api_in, seed=0, position=0, on_invalid="flag", **params), sync, reps)
    out["ours_fused_kernel_W4"] = median_us(
        lambda: ops.sample_canonical(d, dp["top_k"], dp["top_p"], dp["min_p"],
                                     dp["temperature"], ones, True, seeds, pos), sync, reps)
    out["ours_fs_sample_W4"] = median_us(
        lambda: fs.sample(api_in, seed=0, position=0, **params), sync, reps)
    for name, split in (("split", True), ("one_block", False)):   # which path wins where
        out[f"ours_fused_kernel_W4_{name}"] = median_us(
            lambda split=split: ops.sample_canonical(
                d, dp["top_k"], dp["top_p"], dp["min_p"], dp["temperature"], ones, True,
                seeds, pos, split=split), sync, reps)
    out["ours_fused_kernel_W5"] = median_us(
        lambda: ops.sample_canonical(d, zeros, 1.0, 0.0, 0.8, 1, True, seeds, pos),
        sync, reps)
    stages, rng = penalty_stages(fs, V)
    chain = fs.SamplerChain(stages, seed=5, backend="cuda", on_invalid="flag")
    chain.load_states([{"history": h} for h in rng.integers(0, V, (B, 100))])
    out["ours_chain_penalties_bias_W1"] = median_us(lambda: chain.sample(api_in), sync, reps)
    tk = torch.from_numpy(params["top_k"]).to(dev_t)
    tp = torch.from_numpy(params["top_p"]).to(dev_t).float()
    tm = torch.from_numpy(params["min_p"]).to(dev_t).float()
    tt = torch.from_numpy(params["temperature"]).to(dev_t).float()
    sampler = torch_sampler(torch)
    out["torch_sort_sampler_W4"] = median_us(lambda: sampler(xt, tk, tp, tm, tt), sync, reps)
    dst = torch.empty_like(xt)
    out["copy_floor"] = median_us(lambda: dst.copy_(xt), sync, reps)
    out["ours_softmax_W9"] = median_us(lambda: ops.softmax(d, 1.0), sync, reps)
    out["torch_softmax_W9"] = median_us(lambda: xt.softmax(dim=-1), sync, reps)
    for k in sorted({min(50, V), min(1000, V)}):
        out[f"ours_topk_k{k}_W7"] = median_us(lambda k=k: ops.topk(d, k), sync, reps)
        out[f"torch_topk_k{k}_W7"] = median_us(lambda k=k: xt.topk(k, dim=-1), sync, reps)
    ratios = {
        "torch_sort_sampler_over_ours_W4": round(out["torch_sort_sampler_W4"]
                                                 / out["ours_fused_kernel_W4"], 2),
        "ours_W4_over_copy_floor": round(out["ours_fused_kernel_W4"] / out["copy_floor"], 2),
        "ours_softmax_over_torch": round(out["ours_softmax_W9"] / out["torch_softmax_W9"], 2),
    }
    return out, ratios


def w13_flashinfer(torch, wl, B, V, reps, K=4):
    """W13's GPU peer: FlashInfer's ``chain_speculative_sampling`` on target and draft
    probabilities (W1's processing done by torch first, untimed), when FlashInfer is
    installed; fastsample's verify runs on the host (C) for the same inputs. Returns
    ``{name: us}`` or ``{"skipped": why}``."""
    import importlib.util

    if importlib.util.find_spec("flashinfer") is None:
        return {"skipped": "flashinfer is not installed (pip install flashinfer-python)"}
    try:
        from flashinfer.sampling import chain_speculative_sampling
    except Exception as exc:  # noqa: BLE001 - installed but broken: report, do not fail
        return {"skipped": f"flashinfer import failed: {type(exc).__name__}: {exc}"}
    import fastsample as fs

    target, q, drafts = wl.verify_inputs(B, K, V, seed=13)
    sampler_logits = target.reshape(B * (K + 1), V)
    chain = fs.SamplerChain([fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)])
    p = fs.softmax(chain.process(sampler_logits)).reshape(B, K + 1, V)
    tp = torch.from_numpy(p).cuda()
    qp = torch.from_numpy(q).cuda()
    dt = torch.from_numpy(drafts.astype(np.int32)).cuda()

    def sync():
        torch.cuda.synchronize()

    out = {}
    try:
        out["flashinfer_chain_speculative_sampling_W13"] = median_us(
            lambda: chain_speculative_sampling(qp, dt, tp), sync, reps)
    except Exception as exc:  # noqa: BLE001 - an API this version lacks: report it
        return {"skipped": f"chain_speculative_sampling failed: {type(exc).__name__}: {exc}"}
    kw = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8, "seed": np.arange(B)}
    out["ours_host_verify_rejection_W13"] = median_us(
        lambda: fs.verify(target, drafts, q, **kw), lambda: None, reps)
    return out


def check_w13(fs, wl, to_dev, sync, B, V, reps, K=4):
    """fs.verify on device logits against the numpy backend (both methods, draft_probs
    on the device and None), W13's inputs at this V; returns ``(requests differing,
    timings)`` (``reps`` 0: no timings)."""
    target, q, drafts = wl.verify_inputs(B, K, V, seed=17)
    kw = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8, "seed": np.arange(B)}
    dt, dq = to_dev(target), to_dev(q)
    bad, times = 0, {}
    for method in ("rejection", "exact"):
        for name, probs, dprobs in (("q", q, dq), ("q_none", None, None)):
            want = fs.verify(target, drafts, probs, method=method, backend="numpy", **kw)
            got = fs.verify(dt, drafts, dprobs, method=method, **kw)
            bad += int((got.tokens != want.tokens).any(axis=1).sum())
            if reps:   # (no timings in the simulator: correctness only)
                times[f"ours_device_verify_{method}_{name}_W13"] = median_us(
                    lambda method=method, dprobs=dprobs: fs.verify(dt, drafts, dprobs,
                                                                   method=method, **kw),
                    sync, reps)
    return bad, times


# ------------------------------------------------------------------------ PTX only


def ptx_only():
    """Compile every kernel for sm_90 without a GPU (needs NVVM, e.g. the
    ``cuda-toolkit[nvvm]`` wheels): a type or lowering error shows here."""
    from numba import cuda
    from numba import types as T
    from numba.cuda import dispatcher

    class _H200:
        compute_capability = (9, 0)

    dispatcher.get_current_device = lambda: _H200()  # device functions ask the context
    from fastsample.kernels.cuda import arrays as a
    from fastsample.kernels.cuda import canonical as c
    from fastsample.kernels.cuda import split as sp
    from fastsample.kernels.cuda import stages as st
    from fastsample.kernels.cuda import verify as vf

    f32 = T.float32[:, ::1]
    i64, f64, u64 = T.int64[::1], T.float64[::1], T.uint64[::1]
    # pf32, pi32, pf64, cnt, si, sf of split.py
    split_state = (f32, T.int32[:, :, ::1], T.float64[:, :, ::1], T.int32[:, ::1],
                   T.int64[:, ::1], T.float64[:, ::1])
    # the canonical parameters: top_k, top_p, min_p, temperature, min_keep, t_last,
    # XTC's probability and threshold, seed, position
    params = (i64, f64, f64, f64, i64, T.boolean, f64, f64, u64, u64)
    jobs = {
        "sample": (c.sample_kernel, (f32, *params, T.float64[:, ::1], T.int32[::1])),
        "process": (c.process_kernel, (f32, *params, f32, T.int32[::1])),
        # rows read in place (target.load): float16, bfloat16 bits, strided float32
        "sample_f16": (c.sample_kernel, (T.float16[:, ::1], *params, T.float64[:, ::1],
                                         T.int32[::1])),
        "sample_bf16": (c.sample_kernel, (T.int16[:, ::1], *params, T.float64[:, ::1],
                                          T.int32[::1])),
        "split_phase_strided": (sp.phase_kernel, (T.int64, T.int64, T.float32[:, :], *params,
                                                  *split_state)),
        "split_phase": (sp.phase_kernel, (T.int64, T.int64, f32, *params, *split_state)),
        "split_draw": (sp.draw_kernel, (f32, u64, u64, T.int32[:, :, ::1],
                                        T.float64[:, :, ::1], T.int64[:, ::1],
                                        T.float64[:, ::1], T.int32[::1])),
        "split_process": (sp.process_kernel, (T.int64, f32, *params, *split_state, f32,
                                              T.int32[::1])),
        "invalid": (c.invalid_kernel, (f32, T.uint8[::1])),
        "softmax": (a.softmax_kernel, (f32, f64, f32)),
        "log_softmax": (a.log_softmax_kernel, (f32, f32)),
        "topk": (a.topk_kernel, (f32, T.int64, f32, T.int32[:, ::1], f32, T.int32[:, ::1])),
        "cast_f16": (a.cast_kernel, (T.float16[:, :], f32)),
        "cast1_f64": (a.cast1_kernel, (T.float64[:], f32)),
        "replace": (a.replace_kernel, (T.int32[::1], T.int64, T.int64)),
        "cast_bf16": (a.cast_kernel, (T.int16[:, :], f32)),
        "widen": (a.widen_kernel, (T.int32[::1], T.int64[::1])),
        "flag_params": (a.flag_params_kernel, (T.int32[::1], f64, T.int64)),
        "prelude": (st.prelude_kernel, (f32, f32, T.int32[:, ::1], f64, f64, f64,
                                        T.int32[::1], i64, f64, T.uint8[::1], T.int64)),
        "dry": (st.dry_kernel, (f32, f32, i64, f64, T.int64, T.int64, T.int32[:, ::1], f64,
                                f64, f64, T.int32[::1], i64, f64, T.uint8[::1])),
        "zero_counts": (st.zero_kernel, (T.int32[:, ::1],)),
        "scatter_counts": (st.scatter_counts_kernel, (i64, T.int32[:, ::1])),
        "update_counts": (st.update_counts_kernel, (T.int32[:, ::1], i64, i64)),
        "verify": (vf.verify_kernel, (f32, T.int32[::1], i64, T.boolean, T.int32[:, ::1],
                                      T.float32[:, :, ::1], T.boolean, i64, u64, u64,
                                      T.int32[:, ::1], T.int32[::1], T.int32[::1])),
    }
    out = {}
    for name, (kernel, sig) in jobs.items():
        t0 = time.perf_counter()
        ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(9, 0))
        out[name] = {"ptx_chars": len(ptx), "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps({"ok": True, "mode": "ptx", "kernels": out}))


# ------------------------------------------------------------------------ main


def main():
    if "--ptx" in sys.argv:
        return ptx_only()
    start = time.perf_counter()
    try:
        from numba import cuda
    except ImportError as exc:
        fail(f"numba.cuda is not importable: {exc} (pip install numba-cuda)")
    try:
        import torch
    except ImportError as exc:
        fail(f"torch is not importable: {exc}")
    on_gpu = not SIM
    if on_gpu:
        if not cuda.is_available():
            fail("no CUDA GPU is usable (numba.cuda.is_available() is False); "
                 "use --sim for the simulator")
        if not torch.cuda.is_available():
            fail("torch has no CUDA (torch.cuda.is_available() is False)")
    import fastsample as fs
    from fastsample import workloads as wl

    status = fs.backends()["cuda"]
    if not status.available:
        fail(f"the cuda backend is unavailable: {status.reason}")
    ops = fs.registry.load("cuda")
    if on_gpu:
        batches, V, reps = (64, 256), V_FULL, 20

        def to_dev(a):
            return torch.from_numpy(a).cuda()
        device = torch.cuda.get_device_name(0)
    else:
        batches, V, reps = (2, 3), 128, 1   # the script's logic only: tiny and quick

        def to_dev(a):
            return cuda.to_device(a)
        device = "CUDA simulator"
    compile_s = round(ops.warmup(), 2)   # every kernel compiled (or loaded from the cache)
    report, mismatches = correctness(fs, wl, to_dev, batches, V)
    extra = {}
    if on_gpu:  # the API honours torch streams and returns torch tensors
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            xt = to_dev(wl.llm_like(4, V, 5))
            got = fs.sample(xt, top_k=40, seed=1, stream=s)
        extra["torch_stream_result_type"] = f"{type(got).__module__}.{type(got).__name__}"
        want = fs.sample(wl.llm_like(4, V, 5), top_k=40, seed=1, backend="numpy")
        n = int((got.cpu().numpy() != want).sum())
        report["tokens_on_torch_stream"] = n
        mismatches += n
        # logits read in place: bfloat16 (as bits), float16, a transposed (strided) view
        base = to_dev(wl.llm_like(4, V, 6))
        for name, xt in (("bfloat16", base.bfloat16()), ("float16", base.half()),
                         ("strided", base.t().contiguous().t())):
            got = fs.sample(xt, top_k=40, top_p=0.95, seed=3, on_invalid="flag")
            want = fs.sample(xt.float().cpu().numpy(), top_k=40, top_p=0.95, seed=3,
                             backend="numpy")
            n = int((got.cpu().numpy() != want).sum())
            report[f"tokens_torch_{name}"] = n
            mismatches += n
    times, ratios = {}, {}
    for B in (1, *batches) if on_gpu else (1, batches[0]):   # B = 1: the split's case
        t, r = timings(fs, wl, ops, torch, cuda, B, V, reps, on_gpu)
        times.update({f"B{B}_{k}": v for k, v in t.items()})
        ratios.update({f"B{B}_{k}": v for k, v in r.items()})

    def sync():
        cuda.synchronize()
        if on_gpu:
            torch.cuda.synchronize()
    for B in (1, batches[0]):
        t = w10_timings(fs, wl, ops, to_dev, sync, B, V, reps)
        times.update({f"B{B}_{k}": v for k, v in t.items()})
    # W13: fs.verify on the device, then FlashInfer's kernel where it is installed
    n, t = check_w13(fs, wl, to_dev, sync, 64 if on_gpu else 2, V, reps if on_gpu else 0)
    report["W13_verify_requests_differing"] = n
    mismatches += n
    times.update(t)
    if on_gpu:
        extra["W13_flashinfer"] = w13_flashinfer(torch, wl, 64, V, reps)
    print(json.dumps({
        "ok": mismatches == 0, "device": device, "V": V, "batches": list(batches),
        "tpb": ops.TPB, "warmup_s": compile_s, "correctness": report, **extra,
        "timings_us": times, "ratios": ratios, "total_s": round(time.perf_counter() - start, 1),
    }))
    sys.exit(0 if mismatches == 0 else 1)


if __name__ == "__main__":
    main()
