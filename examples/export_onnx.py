"""Export a ViT with a rotary encoding to ONNX and run it with ONNX Runtime.

    python examples/export_onnx.py --method liere --out vit.onnx

``liere.integrations.onnx.export`` calls ``torch.onnx.export(..., dynamo=True)``
on the eval-mode model with a dynamic batch axis and checks the file against
PyTorch with ONNX Runtime. The image size is fixed at export time.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch

from liere.integrations.onnx import export, run_onnxruntime
from liere.models import build_model


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="liere")
    parser.add_argument("--out", default=None, help="where to write the .onnx file (default: a temporary dir)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_model("vit", "micro", args.method, input_shape=(32, 32), patch_size=4, num_classes=10).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export(model, torch.randn(1, 3, 32, 32), args.out or os.path.join(tmp, "vit.onnx"))
        x = torch.randn(8, 3, 32, 32)  # another batch size than the example's
        with torch.no_grad():
            err = float(abs(run_onnxruntime(path, x) - model(x).numpy()).max())
    print(f"{args.method}: exported {path}; ONNX Runtime vs PyTorch at batch 8: max |diff| = {err:.1e}")
    return err


if __name__ == "__main__":
    main()
