"""Ways to apply b x b rotation blocks on the CPU (Spherical RoPE's 3x3 by default, LieRE-8's with -b 8).

Rotation of q and k alone, forward and backward, one thread, interleaved rounds (README, Performance:
"What the rotary rows pay for"). Variants:

* kernel: the library's CPU kernel (``liere.ops.cpu_kernel``, one pass over q and k), its default;
* packed: the eager path it replaced, still the fallback (q and k packed into one (blocks x rows x width)
  buffer, one ``bmm``);
* full-width: one 64x64 block-diagonal matrix per head and token, ``bmm`` straight on strided views of
  q and k (no packing; 7x the packed path's products);
* broadcast: ``(R * x[..., None, :]).sum(-1)``, autograd's backward;
* compiled: ``torch.compile`` (inductor) of the traced form that compiled models run;
* rope_mixed: RoPE-Mixed's complex multiply on the same q and k, for scale.

    python benchmarks/apply_alternatives.py [--batch 32 128] [--rounds 7] [-b 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from liere.ops import cpu_kernel
from liere.ops.apply import _blocks, _fast_blocks

HEADS, TOKENS, HEAD_DIM = 6, 65, 64
SIZE, BLOCKS = 3, 21  # set by main() from -b


class _FullWidth(torch.autograd.Function):
    """x' = x R^T with R the (D x D) block-diagonal matrix of one head and token, on strided (H N, B, D) views."""

    @staticmethod
    def forward(ctx, blocks, q, k):
        ctx.save_for_backward(blocks, q, k)
        r = _full_matrix(blocks)
        return tuple(_rows(x).bmm(r.mT).view(HEADS, TOKENS, -1, HEAD_DIM).permute(2, 0, 1, 3) for x in (q, k))

    @staticmethod
    def backward(ctx, gq, gk):
        blocks, q, k = ctx.saved_tensors
        r = _full_matrix(blocks)
        g_r = _rows(gq).mT.bmm(_rows(q)) + _rows(gk).mT.bmm(_rows(k))
        g_x = [_rows(g).bmm(r).view(HEADS, TOKENS, -1, HEAD_DIM).permute(2, 0, 1, 3) for g in (gq, gk)]
        used = SIZE * BLOCKS
        g_r = g_r.view(HEADS, TOKENS, HEAD_DIM, HEAD_DIM)[..., :used, :used].reshape(HEADS, TOKENS, BLOCKS, SIZE, BLOCKS, SIZE)
        return torch.diagonal(g_r, dim1=-4, dim2=-2).movedim(-1, -3)[None], *g_x


def _rows(x):
    return x.permute(1, 2, 0, 3).reshape(HEADS * TOKENS, -1, HEAD_DIM)


def _full_matrix(blocks):
    out = blocks.new_zeros(HEADS, TOKENS, BLOCKS, SIZE, BLOCKS, SIZE)
    torch.diagonal(out, dim1=-4, dim2=-2).copy_(blocks[0].movedim(-3, -1))
    full = blocks.new_zeros(HEADS, TOKENS, HEAD_DIM, HEAD_DIM)
    used = SIZE * BLOCKS
    full[..., :used, :used] = out.view(HEADS, TOKENS, used, used)
    full[..., used:, used:] = torch.eye(HEAD_DIM - used)
    return full.view(HEADS * TOKENS, HEAD_DIM, HEAD_DIM)


def _traced(q, k, blocks):
    return [torch.cat((_blocks(x, blocks[0]), x[..., SIZE * BLOCKS :]), -1) for x in (q, k)]


def _broadcast(q, k, blocks):
    out = []
    for x in (q, k):
        xr = x[..., : SIZE * BLOCKS].unflatten(-1, (BLOCKS, SIZE))
        out.append(torch.cat(((blocks[0] * xr.unsqueeze(-2)).sum(-1).flatten(-2), x[..., SIZE * BLOCKS :]), -1))
    return out


def _rope_mixed(q, k, angles):
    phase = torch.polar(torch.ones_like(angles), angles)
    return [torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (32, 2)).contiguous()) * phase).flatten(-2)
            for x in (q, k)]


def measure(batch: int, rounds: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(batch)
    qkv = torch.randn(batch, TOKENS, 3, HEADS, HEAD_DIM, generator=gen).permute(2, 0, 3, 1, 4)
    q, k = (t.detach().requires_grad_() for t in qkv[:2])  # strided views, as attention's projection gives
    a = torch.randn(1, HEADS, TOKENS, BLOCKS, SIZE, SIZE, generator=gen)
    blocks = torch.linalg.matrix_exp(a - a.mT).requires_grad_()
    angles = torch.randn(1, HEADS, TOKENS, 32, generator=gen, requires_grad=True)
    compiled = torch.compile(_traced)

    def step(fn, weights):
        outs = fn()
        torch.autograd.grad(sum(o.sum() for o in outs), weights)

    def packed():
        with cpu_kernel.enabled(False):
            return _fast_blocks([q, k], blocks, "bhnd")

    variants = {
        "packed": lambda: step(packed, (blocks, q, k)),
        "kernel": lambda: step(lambda: cpu_kernel.rotate_blocks([q, k], blocks, "bhnd"), (blocks, q, k)),
        "full-width": lambda: step(lambda: _FullWidth.apply(blocks, q, k), (blocks, q, k)),
        "broadcast": lambda: step(lambda: _broadcast(q, k, blocks), (blocks, q, k)),
        "compiled": lambda: step(lambda: compiled(q, k, blocks), (blocks, q, k)),
        "rope_mixed": lambda: step(lambda: _rope_mixed(q, k, angles), (angles, q, k)),
    }
    # The variants agree with the packed path (forward) before anything is timed.
    ref = packed()
    for name, fn in (("kernel", lambda: cpu_kernel.rotate_blocks([q, k], blocks, "bhnd")), ("full-width", lambda: _FullWidth.apply(blocks, q, k)), ("broadcast", lambda: _broadcast(q, k, blocks)),
                     ("compiled", lambda: compiled(q, k, blocks))):
        for got, want in zip(fn(), ref):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=lambda m, name=name: f"{name}: {m}")
    times = {name: [] for name in variants}
    for rnd in range(rounds + 1):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            if rnd:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("-b", "--block-size", type=int, default=3, help="3: Spherical RoPE; 4: ComRoPE; 8: LieRE-8")
    args = p.parse_args()
    if args.block_size < 2 or HEAD_DIM % args.block_size and args.block_size != 3:
        p.error(f"--block-size: expected 3 or a divisor of {HEAD_DIM} from 2 up, got {args.block_size}")
    global SIZE, BLOCKS
    SIZE, BLOCKS = args.block_size, HEAD_DIM // args.block_size
    if not cpu_kernel.available():
        p.error(f"the CPU kernel is not available here: {cpu_kernel.status()}")
    torch.set_num_threads(1)
    print(f"{SIZE}x{SIZE} blocks ({BLOCKS} per head) rotating q and k, forward+backward, {HEADS} heads, {TOKENS} tokens, head_dim "
          f"{HEAD_DIM}, one thread, median of {args.rounds} interleaved rounds (ms; x packed)")
    for batch in args.batch:
        med = measure(batch, args.rounds)
        print(f"batch {batch}: " + ", ".join(f"{n} {1e3 * t:.1f} ({t / med['packed']:.2f}x)" for n, t in med.items()))


if __name__ == "__main__":
    main()
