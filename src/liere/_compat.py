"""What the rest of the package asks of the torch version it runs on, answered once."""

from __future__ import annotations

import torch

__all__ = ["tracing"]


def tracing() -> bool:
    """True inside ``torch.compile``, ``torch.jit`` tracing or ONNX export: no host syncs, no Python-side state."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
