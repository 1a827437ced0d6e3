"""Training and evaluation throughput of the PSVL grounding model, reference-style vs fast.

Both implementations (``GroundingModel(cfg, impl="reference")``: packed GRUs, nn.MultiheadAttention
with its weights, a loop over non-local heads — the PSVL code's way; ``"fast"``: the
default) get the same weights and the same random batch of the reference shape (batch
256, 128 segments × 1024-d, 10 tokens, vocab 506). The script first checks that they
compute the same outputs and gradients, then times them *interleaved* (ref, fast, ref,
fast, …) so that load from other processes hits both alike; medians after warm-up.

Prints one JSON line: train_samples_per_s, eval_queries_per_s (fast), the reference-style
figures, their ratios and the largest output/gradient differences.

    python benchmarks/train_throughput.py            # default: a few minutes on 2 cores
    python benchmarks/train_throughput.py --quick    # fewer steps
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from interleaved import speed_summary, time_interleaved  # benchmarks/interleaved.py


def make_batch(batch: int, segments: int, dim: int, query_len: int, vocab: int, seed: int, device: str):
    """Random inputs of the Charades shape; half the videos use all segments, half fewer."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(segments // 4, segments + 1, (batch,), generator=g)
    lengths[: batch // 2] = segments
    mask = torch.arange(segments)[None] < lengths[:, None]  # [B, S]
    feats = torch.randn(batch, segments, dim, generator=g) * mask[..., None]  # [B, S, D]
    q_len = torch.randint(2, query_len + 1, (batch,), generator=g)
    ids = torch.randint(4, vocab, (batch, query_len), generator=g)
    ids[torch.arange(query_len)[None] >= q_len[:, None]] = 0  # [B, L]
    start = torch.rand(batch, generator=g) * 0.6
    end = start + 0.1 + torch.rand(batch, generator=g) * 0.3
    s_idx, e_idx = (start * lengths).long(), (end * lengths).long().clamp(max=segments - 1)
    seg = torch.arange(segments)[None]
    guidance = ((seg >= s_idx[:, None]) & (seg <= e_idx[:, None])).float()  # [B, S]
    to = lambda t: t.to(device)  # noqa: E731
    return to(feats), to(mask), to(ids), to(start), to(end), to(guidance)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 warm-up and 2 timed steps each")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="timed training steps per implementation (default 5)")
    p.add_argument("--eval-steps", type=int, default=None, help="timed eval batches per implementation (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only-fast", action="store_true", help="time the fast implementation only")
    a = p.parse_args(argv)
    steps = a.steps or (2 if a.quick else 5)
    eval_steps = a.eval_steps or (2 if a.quick else 5)
    warmup = 1 if a.quick else 2
    torch.set_num_threads(a.threads)

    from zeroground.model.psvl import GroundingModel, ModelConfig, grounding_loss

    dev = a.device
    torch.manual_seed(38)
    models = {"reference": GroundingModel(ModelConfig(), impl="reference").to(dev)}
    models["fast"] = GroundingModel(ModelConfig(), impl="fast").to(dev)
    models["fast"].load_state_dict(models["reference"].state_dict())
    feats, mask, ids, start, end, guidance = make_batch(a.batch, 128, 1024, 10, 506, seed=0, device=dev)
    names = ["fast"] if a.only_fast else ["reference", "fast"]

    def sync() -> None:
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    # --- same function? eval outputs, then one training step's loss and gradients (same dropout seed)
    check = {}
    with torch.no_grad():
        outs = {}
        for name in names:
            models[name].eval()
            outs[name] = models[name](feats, mask, ids)
    if len(names) == 2:
        check["max_abs_diff_timestamps"] = float((outs["fast"]["timestamps"] - outs["reference"]["timestamps"]).abs().max())
        check["max_abs_diff_attention"] = float(
            (outs["fast"]["attention_weights"] - outs["reference"]["attention_weights"]).abs().max())
        grads = {}
        for name in names:
            models[name].train()
            torch.manual_seed(1)
            loss = grounding_loss(models[name](feats, mask, ids), start, end, guidance)["loss"]
            g = torch.autograd.grad(loss, list(models[name].parameters()), allow_unused=True)
            grads[name] = (float(loss.detach()), torch.cat([x.flatten() for x in g if x is not None]))
        check["loss_reference"], check["loss_fast"] = grads["reference"][0], grads["fast"][0]
        # relative difference of the whole gradient vector (per-tensor ratios are meaningless
        # for tensors whose true gradient is 0, e.g. conv biases followed by BatchNorm)
        g_ref, g_fast = grads["reference"][1], grads["fast"][1]
        check["rel_diff_grad"] = float((g_fast - g_ref).norm() / g_ref.norm())
        del grads

    # --- training steps (Adam, as the reference), interleaved
    opts = {n: torch.optim.Adam(models[n].parameters(), lr=4e-4) for n in names}

    def train_step(name: str) -> tuple[float, float]:
        m, opt = models[name], opts[name]
        m.train()
        sync()
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = grounding_loss(m(feats, mask, ids), start, end, guidance)["loss"]
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - t, time.process_time() - c

    @torch.no_grad()
    def eval_step(name: str) -> tuple[float, float]:
        m = models[name]
        m.eval()
        sync()
        t, c = time.perf_counter(), time.process_time()
        m(feats, mask, ids)
        sync()
        return time.perf_counter() - t, time.process_time() - c

    # wall-clock seconds, and CPU seconds of this process (less sensitive to other load)
    times = time_interleaved(names, train_step, eval_step, warmup, steps, eval_steps)
    result = speed_summary(times, a.batch)
    result.update(check)
    result.update(batch=a.batch, threads=a.threads, device=dev, timed_train_steps=steps, timed_eval_batches=eval_steps,
                  torch=torch.__version__)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
