"""Training and evaluation throughput of the seed LFVMR network, reference-style vs fast.

The seed's shape (batch 256, 128 segments × 1024-d video, 9 × 512-d candidate CLIP frames,
SPEC §4–5): both implementations (``LFVMRModel(cfg, impl="reference")``: the packed GRU of the
seed's code; ``"fast"``: the default) get the same weights and the same random batch. The
script first checks that they compute the same outputs and gradients, then times training
steps (selector with Gumbel straight-through, noise, Adam, as the seed's loop) *interleaved*
(ref, fast, ref, fast, …) so load from other processes hits both alike; medians after warm-up.
The seed's own code measured on this machine type: 62.6 s per step = 4.1 samples/s, eval
27 queries/s (../shared/lfvmr/oracle/README.md).

    python benchmarks/lfvmr_train_throughput.py            # a few minutes on 2 cores
    python benchmarks/lfvmr_train_throughput.py --quick    # fewer steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from interleaved import speed_summary, time_interleaved  # benchmarks/interleaved.py


def make_batch(batch: int, segments: int, dim: int, clip_dim: int, candidates: int, seed: int):
    """Random inputs of the Charades shape; half the videos use all segments, half fewer."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(segments // 4, segments + 1, (batch,), generator=g)
    lengths[: batch // 2] = segments
    mask = torch.arange(segments)[None] < lengths[:, None]  # [B, S]
    feats = torch.randn(batch, segments, dim, generator=g) * mask[..., None]  # [B, S, D]
    cands = torch.nn.functional.normalize(torch.randn(batch, candidates, clip_dim, generator=g), dim=-1)  # [B, K, Dc]
    text = torch.nn.functional.normalize(torch.randn(batch, clip_dim, generator=g), dim=-1)  # [B, Dc]
    start = torch.rand(batch, generator=g) * 0.6
    end = start + 0.1 + torch.rand(batch, generator=g) * 0.3
    s_idx, e_idx = (start * lengths).long(), (end * lengths).long().clamp(max=segments - 1)
    seg = torch.arange(segments)[None]
    guidance = ((seg >= s_idx[:, None]) & (seg <= e_idx[:, None])).float()  # [B, S]
    return feats, mask, cands, text, start, end, guidance


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 warm-up and 2 timed steps each")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="timed training steps per implementation (default 5)")
    a = p.parse_args(argv)
    steps = a.steps or (2 if a.quick else 5)
    warmup = 1 if a.quick else 2
    torch.set_num_threads(a.threads)

    from zeroground.model.lfvmr import LFVMRConfig, LFVMRModel
    from zeroground.model.psvl import grounding_loss
    from zeroground.train.noise import gaussian_noise

    torch.manual_seed(38)
    models = {"reference": LFVMRModel(LFVMRConfig(), impl="reference")}
    models["fast"] = LFVMRModel(LFVMRConfig(), impl="fast")
    models["fast"].load_state_dict(models["reference"].state_dict())
    feats, mask, cands, text, start, end, guidance = make_batch(a.batch, 128, 1024, 512, 9, seed=0)
    names = ["reference", "fast"]

    check = {}
    with torch.no_grad():
        outs = {n: models[n].eval()(feats, mask, text) for n in names}
    check["max_abs_diff_timestamps"] = float((outs["fast"]["timestamps"] - outs["reference"]["timestamps"]).abs().max())
    check["max_abs_diff_attention"] = float(
        (outs["fast"]["attention_weights"] - outs["reference"]["attention_weights"]).abs().max())
    grads = {}
    for n in names:
        models[n].train()
        torch.manual_seed(1)  # same dropout and Gumbel draws
        loss = grounding_loss(models[n](feats, mask, cands), start, end, guidance)["loss"]
        g = torch.autograd.grad(loss, list(models[n].parameters()), allow_unused=True)
        grads[n] = (float(loss.detach()), torch.cat([x.flatten() for x in g if x is not None]))
    check["loss_reference"], check["loss_fast"] = grads["reference"][0], grads["fast"][0]
    check["rel_diff_grad"] = float((grads["fast"][1] - grads["reference"][1]).norm() / grads["reference"][1].norm())
    del grads

    opts = {n: torch.optim.Adam(models[n].parameters(), lr=4e-4) for n in names}
    noise_gen = torch.Generator().manual_seed(0)

    def train_step(name: str) -> tuple[float, float]:
        m, opt = models[name], opts[name]
        m.train()
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        query = gaussian_noise(cands, 0.04, noise_gen)  # the seed's add_noise, part of its step
        loss = grounding_loss(m(feats, mask, query), start, end, guidance)["loss"]
        loss.backward()
        opt.step()
        return time.perf_counter() - t, time.process_time() - c

    @torch.no_grad()
    def eval_step(name: str) -> tuple[float, float]:
        m = models[name].eval()
        t, c = time.perf_counter(), time.process_time()
        m(feats, mask, text)
        return time.perf_counter() - t, time.process_time() - c

    times = time_interleaved(names, train_step, eval_step, warmup, steps, steps)
    result = speed_summary(times, a.batch)
    # the seed's own code on this machine type: 4.1 samples/s (../shared/lfvmr/oracle/README.md)
    fast_step = statistics.median(x[0] for x in times["fast"]["train"])
    result["speedup_vs_seed_code_measured"] = round((a.batch / fast_step) / 4.1, 2) if a.batch == 256 else None
    result.update(check)
    result.update(batch=a.batch, threads=a.threads, timed_train_steps=steps, torch=torch.__version__)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
