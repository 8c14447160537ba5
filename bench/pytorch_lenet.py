#!/usr/bin/env python3
"""The LeNet workload of deploy/examples/mnist-lenet.toml, written in PyTorch with
torch.distributed (gloo): what a user would otherwise run, for bench/compare.sh to time against
dprox.

Five processes on a ring (Metropolis weights: 1/3 each), node i holding the training samples of
digits {i, 9 - i}, LeNet-5 (conv 5x5 6 channels padded, max pool, conv 5x5 16 channels, max pool,
dense 120, 84, 10; ReLU; 61,706 parameters), minibatches of 32, l2 regulariser 1e-4 applied as a
prox, step 0.1. The algorithm is DProxSGT (docs/algorithms.md section 4.1) or CDProxSGT with top-k
compression of both exchanges (section 4.2; gamma 1): the same updates as dprox, but with
PyTorch's kernels, its own initialisation and batch order, and f32 sums, so the iterates are not
dprox's bit for bit. Neighbours exchange with isend/irecv.

Prints one JSON line on rank 0: the loop's wall time (after a barrier, before the final barrier),
seconds per iteration, the threads per process and the test accuracy of the average model.

    python3 bench/pytorch_lenet.py --data data/mnist_5k.csv.gz --iterations 300
"""

import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


def load(path, test_fraction, seed):
    """Rows of `label_column = last` CSV, pixels scaled to [0, 1]; a seeded test split."""
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = raw[:, :-1] / 255.0, raw[:, -1].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return x[train], y[train], x[test], y[test]


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(400, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = x.flatten(1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


def flat_views(model):
    """One flat parameter vector and one flat gradient vector that the model's tensors view."""
    params = list(model.parameters())
    dim = sum(p.numel() for p in params)
    x, g = torch.zeros(dim), torch.zeros(dim)
    off = 0
    for p in params:
        n = p.numel()
        x[off : off + n].copy_(p.data.flatten())
        p.data = x[off : off + n].view_as(p)
        p.grad = g[off : off + n].view_as(p)
        off += n
    return x, g


class Ring:
    """Exchanges with the two ring neighbours; received vectors are mixed with weight 1/3 each."""

    def __init__(self, rank, n, dim, k):
        self.rank, self.peers = rank, [(rank - 1) % n, (rank + 1) % n]
        self.k = k
        self.bufs = [torch.zeros(dim) for _ in self.peers]
        self.idx = [torch.zeros(k or 1, dtype=torch.int64) for _ in self.peers]
        self.val = [torch.zeros(k or 1) for _ in self.peers]

    def dense(self, v):
        """sum_j w_ij v_j over self and both neighbours."""
        reqs = [dist.isend(v, p) for p in self.peers]
        reqs += [dist.irecv(b, p) for b, p in zip(self.bufs, self.peers)]
        for r in reqs:
            r.wait()
        return (v + self.bufs[0] + self.bufs[1]) / 3.0

    def sparse(self, idx, val, s):
        """s += sum_j w_ij q_j, q given as (indices, values) by each node, own q included."""
        reqs = [dist.isend(t, p) for p in self.peers for t in (idx, val)]
        for i, v, p in zip(self.idx, self.val, self.peers):
            reqs += [dist.irecv(i, p), dist.irecv(v, p)]
        for r in reqs:
            r.wait()
        s.index_add_(0, idx, val / 3.0)
        for i, v in zip(self.idx, self.val):
            s.index_add_(0, i, v / 3.0)


def top_k(delta, k):
    _, idx = torch.topk(delta.abs(), k, sorted=False)
    return idx, delta[idx]


def worker(rank, args, data):
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=args.nodes)
    xtr, ytr, xte, yte = data
    mine = np.isin(ytr, [rank, 9 - rank])
    feats = torch.from_numpy(xtr[mine]).view(-1, 1, 28, 28)
    labels = torch.from_numpy(ytr[mine])
    torch.manual_seed(args.seed)  # the same x0 on every node
    model = LeNet()
    x, g = flat_views(model)
    dim = x.numel()
    k = int(args.top_k * dim) if args.algorithm == "cdproxsgt" else 0
    ring = Ring(rank, args.nodes, dim, k)
    y, g_prev = torch.zeros(dim), torch.zeros(dim)
    xh, yh, sx, sy = (torch.zeros(dim) for _ in range(4))
    gen = torch.Generator().manual_seed(args.seed * 1000 + rank)
    perm, pos = torch.randperm(len(labels), generator=gen), 0
    shrink = 1.0 / (1.0 + args.lr * args.l2)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.iterations):
        if pos + args.batch > len(perm):
            perm, pos = torch.randperm(len(labels), generator=gen), 0
        sel = perm[pos : pos + args.batch]
        pos += args.batch
        g.zero_()
        F.cross_entropy(model(feats[sel]), labels[sel]).backward()
        with torch.no_grad():
            half = y + g - g_prev
            g_prev.copy_(g)
            if k:
                idx, val = top_k(half - yh, k)
                yh.index_add_(0, idx, val)
                ring.sparse(idx, val, sy)
                y = half - yh + sy
            else:
                y = ring.dense(half)
            xhalf = (x - args.lr * y) * shrink
            if k:
                idx, val = top_k(xhalf - xh, k)
                xh.index_add_(0, idx, val)
                ring.sparse(idx, val, sx)
                x.copy_(xhalf - xh + sx)
            else:
                x.copy_(ring.dense(xhalf))
    dist.barrier()
    loop = time.perf_counter() - start
    with torch.no_grad():
        dist.all_reduce(x)
        x /= args.nodes
        pred = model(torch.from_numpy(xte).view(-1, 1, 28, 28)).argmax(1)
        acc = (pred == torch.from_numpy(yte)).float().mean().item()
    if rank == 0:
        print(
            json.dumps(
                {
                    "system": "pytorch-gloo",
                    "algorithm": args.algorithm,
                    "loop_s": round(loop, 3),
                    "s_per_iteration": loop / args.iterations,
                    "threads_per_process": args.threads,
                    "accuracy": round(acc, 4),
                }
            ),
            flush=True,
        )
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/mnist_5k.csv.gz")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--algorithm", choices=["dproxsgt", "cdproxsgt"], default="dproxsgt")
    p.add_argument("--top-k", type=float, default=0.3, help="share of coordinates (cdproxsgt)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    data = load(args.data, 0.2, args.seed)
    mp.spawn(worker, args=(args, data), nprocs=args.nodes, join=True)


if __name__ == "__main__":
    main()
