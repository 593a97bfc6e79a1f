"""finetune-studio-cli with ``tiny_fails_on_rank_1``: the tiny backbone, except that
in the process torchrun calls rank 1 it raises during its third training step, while
the other processes wait for it in the step's gradient exchange."""

from __future__ import annotations

import os
import sys

import torch

from finetune_studio.cli import main
from finetune_studio.engine.backbones import register_backbone
from support.tiny import TinyNet, register_tiny, tiny_spec

FAILING = "tiny_fails_on_rank_1"


class FailsOnRankOne(TinyNet):
    steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and os.environ.get("RANK") == "1":
            FailsOnRankOne.steps += 1
            if FailsOnRankOne.steps == 3:
                raise RuntimeError("the GPU fell off the bus")
        return super().forward(x)


if __name__ == "__main__":
    register_tiny()
    register_backbone(tiny_spec(FAILING, FailsOnRankOne))
    raise SystemExit(main(sys.argv[1:]))
