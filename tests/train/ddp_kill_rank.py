"""Run by torchrun in tests: ``zeroground train`` whose rank 1 SIGKILLs itself at step K.

Usage: torchrun --nproc_per_node=2 tests/train/ddp_kill_rank.py K <zeroground train args...>
A real kill of a rank process (no cleanup, no exception), at a fixed step so the test is exact.
"""

import os
import signal
import sys

import zeroground.train.loop as loop

kill_at = int(sys.argv[1])
real_loss = loop.grounding_loss
calls = {"n": 0}


def counting_loss(*args, **kwargs):
    calls["n"] += 1
    if int(os.environ["RANK"]) == 1 and calls["n"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_loss(*args, **kwargs)


loop.grounding_loss = counting_loss
sys.argv = ["zeroground", "train"] + sys.argv[2:]
from zeroground.cli import main  # noqa: E402

main()
