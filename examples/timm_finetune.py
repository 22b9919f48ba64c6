"""Convert a timm ViT to LieRE and fine-tune it, then evaluate at another image size.

    pip install timm            # timm needs torchvision
    python examples/timm_finetune.py --steps 200

The task is made up on the fly, so nothing is downloaded: a bright square sits in
one quadrant of a noisy image and the label is the quadrant. It needs position
information, which after ``remove_abs_pos=True`` comes from the rotary encoding
alone. With a pretrained model, load its weights first (``pretrained=True``) and
convert afterwards: the attention weights are reused as they are.
"""

from __future__ import annotations

import argparse

import timm
import torch
import torch.nn.functional as F

from liere.integrations.timm import convert


def quadrant_batch(batch: int, size: int, generator: torch.Generator):
    """Images (B, 3, size, size) with a bright square in quadrant y (0..3)."""
    y = torch.randint(0, 4, (batch,), generator=generator)
    x = 0.3 * torch.randn(batch, 3, size, size, generator=generator)
    half, side = size // 2, size // 4
    for i in range(batch):
        top = int(y[i]) // 2 * half + int(torch.randint(0, half - side + 1, (1,), generator=generator))
        left = int(y[i]) % 2 * half + int(torch.randint(0, half - side + 1, (1,), generator=generator))
        x[i, :, top : top + side, left : left + side] += 2.0
    return x, y


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="liere")
    parser.add_argument("--block-size", type=int, default=8)
    # "centers" keeps the grid in [0, 1] at every size, as this task's quadrants are; "liere" (LieRE's own
    # convention) keeps the patch spacing instead, so the image extends past 1 at a larger size.
    parser.add_argument("--convention", default="centers", choices=["liere", "centers", "index"])
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--eval-size", type=int, default=48)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    # Any timm VisionTransformer: here vit_tiny's width (192, 3 heads) at a small size, built for any input size.
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=args.img_size, patch_size=8,
                              depth=args.depth, num_classes=4, dynamic_img_size=True)
    model = convert(model, args.method, block_size=args.block_size, remove_abs_pos=True,
                    convention=args.convention)

    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05, foreach=False)
    for step in range(1, args.steps + 1):
        x, y = quadrant_batch(args.batch, args.img_size, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}")

    model.eval()
    with torch.no_grad():
        for size in (args.img_size, args.eval_size):
            x, y = quadrant_batch(256, size, gen)
            acc = (model(x).argmax(-1) == y).float().mean().item()
            print(f"accuracy at {size}x{size}: {acc:.3f}")
    return acc


if __name__ == "__main__":
    main()
