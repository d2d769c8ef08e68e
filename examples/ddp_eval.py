"""Multi-process evaluation with torchrun: each rank embeds its shard, compute() syncs the states.

    torchrun --nproc_per_node=2 examples/ddp_eval.py --tiny      # CPU: gloo; GPUs: NCCL, one GPU per rank
    python examples/ddp_eval.py --tiny                            # the same, one process

A ``DistributedSampler`` shards the data (padding ranks with repeats when the size does not divide); the dataset
indices go to ``update(ids=...)`` so repeats are counted once and every world size gives the same numbers.
``--tiny`` uses a tiny RANDOM PaSST: the numbers only exercise the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from torchmetrics_av import FrechetAudioDistance, PaSSTKLDivergence
from torchmetrics_av.backbones import PaSST

SAMPLE_RATE = 16000


def synthetic(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, SAMPLE_RATE, generator=g) - 0.5) * torch.linspace(0.2, 0.9, n)[:, None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--n", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--out", help="write the results JSON here (rank 0)")
    args = p.parse_args()

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")

    torch.manual_seed(0)
    passt = PaSST(pretrained=False, embed_dim=32, depth=1, num_heads=2) if args.tiny else PaSST()
    fd = FrechetAudioDistance(sample_rate=SAMPLE_RATE, backbone=passt).to(device)
    kl = PaSSTKLDivergence(sample_rate=SAMPLE_RATE, backbone=passt).to(device)

    generated, reference = synthetic(args.n, 1), synthetic(args.n, 2)
    indices = list(range(args.n))
    sampler = DistributedSampler(indices, num_replicas=world, rank=rank, shuffle=False)
    for ids in DataLoader(indices, batch_size=args.batch_size, sampler=sampler):
        fd.update(preds=generated[ids], target=reference[ids], ids=ids, target_ids=ids)
        kl.update(generated[ids], reference[ids], ids=ids)

    result = {
        "world_size": world,
        "fd_passt": float(fd.compute()),
        "kl_passt": float(kl.compute()),
        "n_preds": fd.details["n_preds"],
        "n_pairs": kl.details["n_samples"],
    }
    if rank == 0:
        if args.tiny:
            print("!! RANDOM WEIGHTS: tiny random PaSST; the values are not FD_PaSST/KL_PaSST")
        print(json.dumps(result))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
