"""Train a ViT under torch.compile(fullgraph=True), then evaluate it at a larger image size.

    python examples/compile_vit.py --steps 50            # inductor (the default backend)
    python examples/compile_vit.py --backend aot_eager   # fast to compile, for a quick check

The whole forward, rotation included, is one graph: rotations are real
cos/sin/matmul ops (no complex numbers), the exponential's squaring loop has a
static length under compile, and a new image size triggers one recompile, not
one per call. The script counts the compiles with a wrapping backend.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from liere.models import build_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="liere")
    parser.add_argument("--block-size", type=int, default=8)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("vit", "micro", args.method, input_shape=(32, 32), patch_size=4, num_classes=10,
                        block_size=args.block_size if args.method == "liere" else None)

    compiles = []
    backend = torch._dynamo.lookup_backend(args.backend)

    def counting(gm, example_inputs):
        compiles.append(len(gm.graph.nodes))
        return backend(gm, example_inputs)

    compiled = torch.compile(model, backend=counting, fullgraph=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))  # memorise one batch
    for step in range(1, args.steps + 1):
        loss = F.cross_entropy(compiled(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"{args.steps} compiled steps, final loss {loss.item():.3f}")

    model.eval()
    with torch.no_grad():
        for size in (48, 48, 64):
            out = compiled(torch.randn(4, 3, size, size))
            print(f"eval at {size}x{size}: logits {tuple(out.shape)}, compiles so far {len(compiles)}")
    return len(compiles)


if __name__ == "__main__":
    main()
