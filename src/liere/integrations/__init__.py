"""Bridges to the rest of the ecosystem: ``liere.integrations.timm`` (convert a timm ViT) and
``liere.integrations.onnx`` (export with the exporter that works). Each imports its framework lazily."""

__all__ = ["timm", "onnx"]
