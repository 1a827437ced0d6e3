"""Run by torchrun in tests: 20 steps of 2-rank DDP vs one process with the same global batch.

Every rank also trains the one-process model on the whole global batch, so the two sets of
weights can be compared in one place. SGD, not Adam: Adam divides each gradient by its
own running magnitude, so on parameters whose exact gradient is zero (the conv biases in
front of BatchNorm) it turns float32 rounding noise into full-size steps -- one process
run with 1 vs 2 threads differs just as much. SGD shows what DDP itself changes.
With DTYPE ``float64`` both models and every input are float64: float32 rounding then no
longer feeds the model's ReLU flips (see tests/train/test_ddp.py), and what is left is what
DDP itself does -- the split, the loss scale, the cross-rank BatchNorm, the gradient average.
Usage: torchrun --nproc_per_node=2 tests/train/ddp_equivalence_worker.py CONFIG.yaml OUT.json [DTYPE]
"""

import copy
import json
import sys

import numpy as np
import torch
import yaml

from zeroground.config import from_dict
from zeroground.model.psvl import GroundingModel, QueryBatch, grounding_loss
from zeroground.train.config import TrainConfig
from zeroground.train.data import make_batch
from zeroground.train.ddp import init_distributed, shutdown, wrap_model
from zeroground.train.loop import prepare_training

torch.set_num_threads(1)
cfg = from_dict(TrainConfig, yaml.safe_load(open(sys.argv[1])))
cfg, data, _ = prepare_training(cfg)
ctx = init_distributed()
torch.manual_seed(cfg.train.seed)
dtype = getattr(torch, sys.argv[3] if len(sys.argv) > 3 else "float32")
single = GroundingModel(cfg.model).to(dtype)
initial = copy.deepcopy(single.state_dict())
net = copy.deepcopy(single)
ddp = wrap_model(net, ctx)
opt_single = torch.optim.SGD(single.parameters(), lr=0.01)
opt_ddp = torch.optim.SGD(net.parameters(), lr=0.01)
single.train(), ddp.train()
B, steps, n = cfg.train.batch_size, 0, len(data)
grad_diff = 0.0
for epoch in range(100):
    perm = np.random.default_rng([cfg.train.seed, epoch]).permutation(n)
    seeds = np.random.default_rng([cfg.train.seed, epoch, 1]).integers(0, 2**31, size=n)
    for step in range(n // B):
        idx = perm[step * B:(step + 1) * B]
        batch = make_batch(data, idx, cfg.model, np.random.default_rng(int(seeds[step])))
        batch = type(batch)(batch.video_feats.to(dtype), batch.video_mask, batch.query, batch.start.to(dtype),
                            batch.end.to(dtype), batch.guidance.to(dtype))
        out = single(batch.video_feats, batch.video_mask, batch.query)
        loss = grounding_loss(out, batch.start, batch.end, batch.guidance)["loss"]
        opt_single.zero_grad(), loss.backward(), opt_single.step()
        rows = torch.from_numpy(ctx.rows(len(idx)))
        q = QueryBatch(ids=batch.query.ids[rows])
        out = ddp(batch.video_feats[rows], batch.video_mask[rows], q)
        loss = grounding_loss(out, batch.start[rows], batch.end[rows], batch.guidance[rows])["loss"]
        opt_ddp.zero_grad(), (loss * ctx.loss_scale(len(idx))).backward()
        pairs = [(p.grad, q.grad) for p, q in zip(single.parameters(), net.parameters()) if p.grad is not None]
        scale = max(float(g.abs().max()) for g, _ in pairs)  # relative to the largest gradient entry
        grad_diff = max(grad_diff, max(float((g - h).abs().max()) for g, h in pairs) / scale)
        opt_ddp.step()
        steps += 1
        if steps == 20:
            break
    if steps == 20:
        break
weight_diff = max(float((a - b).abs().max()) for a, b in zip(single.state_dict().values(), net.state_dict().values())
                  if a.is_floating_point())
moved = max(float((a - b).abs().max()) for a, b in zip(single.state_dict().values(), initial.values())
            if a.is_floating_point())
worst = sorted(((float((a - b).abs().max()), k) for (k, a), b in zip(single.state_dict().items(),
                net.state_dict().values()) if a.is_floating_point()), reverse=True)[:3]
if ctx.is_main:
    json.dump({"steps": steps, "weight_diff": weight_diff, "grad_diff": grad_diff, "moved": moved, "worst": worst},
              open(sys.argv[2], "w"))
shutdown()
