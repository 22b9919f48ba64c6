"""What each method's rotation costs inside a ViT-Tiny step: the whole position-encoding part, nothing else.

For each method: the rotations of all 12 layers from the positions (per-layer generators, as the step
benchmark's model), q and k of every layer rotated as attention makes them (views of one qkv projection),
and the backward to the qkv projections and the encoding's parameters. A row "none" does the same with
the rotation left out (q and k multiplied by 1), which is what every row pays anyway for the views and
their gradients; each row's "above none" is its rotation's own cost. Rows are interleaved round by round,
2 threads, allocator tuned as the ``liere`` command tunes it (``liere/allocator.py``).

It answers how far a method can sit above RoPE-Mixed in a whole step (``liere bench --case step``): at
most (its cost - RoPE-Mixed's) / RoPE-Mixed's step time, however the rest of the step is measured.

    python benchmarks/rotation_in_step.py [--batch 32 128] [--rounds 9] [--kept-inputs] [--methods ...]

A row is METHOD[:BLOCK][/shared]: ``liere:64/shared`` is dense LieRE with one set of generators for the 12
layers, ``liere:64`` the same per layer.

A row ending in ``/compiled`` runs the same forward (rotations and the 12 layers' q and k) through
``torch.compile`` (inductor; the backward is inductor's too), so that it can be set beside its eager row: the
compiled path takes the traceable forms (``ops/apply.py``) and the exponential's custom operator, not the
CPU kernel. Its compilation is the first warm-up round and is printed, not timed.

``--kept-inputs`` adds, for each block method, a row whose rotation is not marked orthogonal, so that the CPU
kernel's backward reads the kept inputs (q and k as views of qkv) instead of the rotated outputs: an A/B of
that choice (``ops/cpu_kernel.py``) in the same process.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

import liere
from liere.bench import _allow_recompiles
from liere.positions import grid

LAYERS, HEADS, HEAD_DIM, SIDE = 12, 6, 64, 8
METHODS = ["none", "rope_mixed", "spherical:3", "comrope_ap:4", "comrope_ld:4", "liere:8"]
KEPT, SHARED, COMPILED = "/kept-inputs", "/shared", "/compiled"


def _row(spec: str, batch: int):
    """A step function for one row: METHOD[:BLOCK][/shared][/kept-inputs|/compiled] (e.g. liere:64/shared)."""
    kept_inputs, compiled, shared = spec.endswith(KEPT), spec.endswith(COMPILED), SHARED in spec
    method, _, size = spec.removesuffix(KEPT).removesuffix(COMPILED).removesuffix(SHARED).partition(":")
    qkvs = [torch.randn(batch, SIDE * SIDE + 1, 3, HEADS, HEAD_DIM, requires_grad=True) for _ in range(LAYERS)]
    grad = torch.randn(batch, HEADS, SIDE * SIDE + 1, HEAD_DIM)
    if method == "none":
        encoding = positions = None
    else:
        kwargs = {"block_size": int(size)} if size else {}
        encoding = liere.build(method, pos_dims=2, head_dim=HEAD_DIM, num_heads=HEADS, num_layers=LAYERS,
                               share_layers=shared, **kwargs).train()
        # the CLS token at the origin, then the patch grid, as the ViT places them
        positions = torch.cat([torch.zeros(1, 2), grid((SIDE, SIDE), encoding.default_convention)])

    def forward(qkvs):
        rotation = encoding.rotation(positions) if encoding is not None else None
        if kept_inputs:
            rotation = dataclasses.replace(rotation, orthogonal=False)
        outs = []
        for layer, qkv in enumerate(qkvs):
            q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            outs += encoding(q, k, rotation.layer(layer)) if encoding is not None else (q * 1.0, k * 1.0)
        return outs

    if compiled:
        forward = torch.compile(forward)

    def step():
        outs = forward(qkvs)
        torch.autograd.backward(outs, [grad] * len(outs))
        for qkv in qkvs:
            qkv.grad = None
        if encoding is not None:
            encoding.zero_grad(set_to_none=True)

    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--kept-inputs", action="store_true", help="A/B rows: the backward reads the inputs")
    args = parser.parse_args(argv)
    if args.kept_inputs:
        args.methods += [m + KEPT for m in args.methods if ":" in m and not m.endswith(KEPT)]
    torch.set_num_threads(2)
    # Every /compiled row compiles the same code object (forward, above) once per batch size; past dynamo's
    # limit (8) the later rows would run eagerly without saying so.
    _allow_recompiles(len(args.methods) * len(args.batch))
    print(f"allocator: {liere.tune_allocator()}")
    for batch in args.batch:
        steps = {spec: _row(spec, batch) for spec in args.methods}
        times = {spec: [] for spec in steps}
        for rnd in range(args.rounds + 2):
            for spec, step in steps.items():
                t0 = time.perf_counter()
                step()
                if rnd >= 2:  # two warm-up rounds
                    times[spec].append(time.perf_counter() - t0)
                elif rnd == 0 and spec.endswith(COMPILED):
                    print(f"  {spec}: first step (compilation) {time.perf_counter() - t0:.1f} s", flush=True)
        med = {spec: 1e3 * statistics.median(t) for spec, t in times.items()}
        none, ref = med.get("none"), med.get("rope_mixed")
        print(f"batch {batch}: median of {args.rounds} interleaved rounds (ms, 12 layers, forward+backward)")
        for spec, ms in med.items():
            above = "" if none is None else f"  above none {ms - none:7.1f}"
            versus = "" if ref is None or none is None or ref == none else \
                f"  x RoPE-Mixed's rotation {(ms - none) / (ref - none):5.2f}"
            print(f"  {spec:<26}{ms:9.1f}{above}{versus}")


if __name__ == "__main__":
    main()
