"""Distributed training entry point for torchrun.

    torchrun --standalone --nproc_per_node=2 tools/train.py configs/X.yaml --work-dir DIR
    torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=8 tools/train.py ...

Same arguments as `vidpose train`; rank, world size and device come from torchrun's
environment (gloo on CPU, nccl on CUDA).
"""

import sys

from vidpose.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
