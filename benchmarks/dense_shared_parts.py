"""Where dense LieRE shared by the layers spends its rotation time in a ViT-Tiny step (batch 32, 12 layers).

Rows, interleaved round by round (ms, forward and backward): ``none`` (q and k taken as views of each layer's
qkv projection, as ``rotation_in_step.py``), ``apply, R fixed`` (the 12 layers' q and k rotated by a rotation
that needs no gradient), ``apply, R trained`` (the same with the rotation's gradient), ``exponentials`` (the
rotation from the positions and its backward, nothing applied), and ``all`` (the whole position-encoding part).
Set beside ``dense_floor.py``'s count of the products each part runs.

    python benchmarks/dense_shared_parts.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import liere
from liere.positions import grid

LAYERS, HEADS, HEAD_DIM, SIDE, BATCH = 12, 6, 64, 8, 32


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    print(f"allocator: {liere.tune_allocator()}")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    enc = liere.build("liere", pos_dims=2, head_dim=HEAD_DIM, num_heads=HEADS, num_layers=LAYERS,
                      share_layers=True, block_size=HEAD_DIM).train()
    pos = torch.cat([torch.zeros(1, 2), grid((SIDE, SIDE), enc.default_convention)])
    with torch.no_grad():
        fixed = enc.rotation(pos)
    leaf = fixed.blocks.detach().clone().requires_grad_()
    trained = dataclasses.replace(fixed, blocks=leaf)
    qkvs = [torch.randn(BATCH, SIDE * SIDE + 1, 3, HEADS, HEAD_DIM, requires_grad=True) for _ in range(LAYERS)]
    grad = torch.randn(BATCH, HEADS, SIDE * SIDE + 1, HEAD_DIM)

    def apply(rotation):
        outs = []
        for layer, qkv in enumerate(qkvs):
            q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            outs += enc(q, k, rotation.layer(layer)) if rotation is not None else (q * 1.0, k * 1.0)
        torch.autograd.backward(outs, [grad] * len(outs))
        for qkv in qkvs:
            qkv.grad = None
        leaf.grad = None

    def exponentials():
        r = enc.rotation(pos)
        torch.autograd.backward(r.blocks, torch.ones_like(r.blocks))
        enc.zero_grad(set_to_none=True)

    def whole():
        apply(enc.rotation(pos))
        enc.zero_grad(set_to_none=True)

    rows = {"none": lambda: apply(None), "apply, R fixed": lambda: apply(fixed),
            "apply, R trained": lambda: apply(trained), "exponentials": exponentials, "all": whole}
    times = {label: [] for label in rows}
    for _ in range(args.rounds):
        for label, run in rows.items():
            run()
            t0 = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t0)
    print(f"batch {BATCH}, dense LieRE shared by {LAYERS} layers, median of {args.rounds} interleaved rounds (ms)")
    for label, ts in times.items():
        print(f"  {label:<18} {1e3 * statistics.median(ts):8.1f}")


if __name__ == "__main__":
    main()
