"""Checks of the fused Triton kernel against the eager path; run with TRITON_INTERPRET=1.

Run by ``test_ops_triton.py`` in a subprocess, so that the interpreter's
environment variable never reaches the other tests' process. Prints one line
per case and exits non-zero on the first mismatch.
"""

from __future__ import annotations

import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402

from liere.ops import triton_apply  # noqa: E402
from liere.ops.apply import _rotate_eager  # noqa: E402
from liere.ops.expm import skew_expm  # noqa: E402
from liere.rotation import Rotation  # noqa: E402

B, H, N = 2, 3, 4
ULPS = {torch.float32: 4e-6, torch.float16: 2 * 2**-10, torch.bfloat16: 2 * 2**-7}


def make_rotation(form: str, b: int, head_dim: int, bp: int, hp: int, grad: bool):
    m = head_dim // b
    if form == "planar":
        angles = (3 * torch.randn(1, bp, hp, N, m)).requires_grad_(grad)
        return Rotation(head_dim, cos=angles.cos(), sin=angles.sin()), angles
    u = torch.randn(1, bp, hp, N, m, b, b).requires_grad_(grad)
    return Rotation(head_dim, blocks=skew_expm(u - u.mT)), u


def inputs(layout: str, head_dim: int, dtype, strided: bool):
    shape = (B, H, N, head_dim) if layout == "bhnd" else (B, N, H, head_dim)
    if strided:  # q and k as slices of a fused qkv tensor: non-contiguous, like a real attention layer
        qkv = torch.randn(*shape[:-1], 3 * head_dim).to(dtype)
        return qkv[..., :head_dim], qkv[..., head_dim : 2 * head_dim]
    return torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)


def close(a, b, dtype, what):
    err = (a.float() - b.float()).abs().max().item()
    scale = max(1.0, b.float().abs().max().item())
    if err > ULPS[dtype] * scale:
        raise AssertionError(f"{what}: max error {err:.3g} > {ULPS[dtype] * scale:.3g}")
    return err


def check(form, b, head_dim, layout, dtype, bp, hp, strided):
    torch.manual_seed(b * 1000 + head_dim)
    rot, param = make_rotation(form, b, head_dim, bp, hp, grad=True)
    q, k = inputs(layout, head_dim, dtype, strided)
    q.requires_grad_(True)
    k.requires_grad_(True)
    gq, gk = torch.randn(q.shape).to(dtype), torch.randn(k.shape).to(dtype)
    out = triton_apply.rotate_qk_triton(q, k, rot, layout)
    assert out[0].dtype == dtype and out[0].shape == q.shape
    got = torch.autograd.grad(out, (q, k, param), (gq, gk), retain_graph=True)
    ref_out = (_rotate_eager(q, rot, layout), _rotate_eager(k, rot, layout))
    want = torch.autograd.grad(ref_out, (q, k, param), (gq, gk))
    close(out[0], ref_out[0], dtype, "q'")
    close(out[1], ref_out[1], dtype, "k'")
    close(got[0], want[0], dtype, "grad q")
    close(got[1], want[1], dtype, "grad k")
    # The rotation's gradient sums over the batch in float32; compare loosely for half inputs.
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    err = (got[2] - want[2]).abs().max().item() / max(1.0, want[2].abs().max().item())
    assert err <= tol, f"grad rotation: relative error {err:.3g}"
    # Single-tensor entry point.
    close(triton_apply.rotate_triton(q.detach(), rot, layout), ref_out[0], dtype, "rotate_triton")


def main() -> int:
    cases = 0
    for form, b, head_dim in [("planar", 2, 9), ("blocks", 2, 8), ("blocks", 3, 10), ("blocks", 4, 9),
                              ("blocks", 8, 19), ("blocks", 16, 35)]:
        for layout in ("bhnd", "bnhd"):
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                configs = [(1, H, False), (1, 1, True), (B, H, True)]
                if dtype != torch.float32:  # half inputs: one broadcast configuration each, in turn
                    configs = [configs[cases % 3]]
                for bp, hp, strided in configs:
                    check(form, b, head_dim, layout, dtype, bp, hp, strided)
                    cases += 1
    print(f"ok: {cases} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
