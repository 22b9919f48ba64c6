"""Read the rotary encoding of a timm model that already has one, and start liere's methods from it.

timm's RoPE ViTs (``timm.models.eva.Eva``: RoPE-ViT axial and mixed from naver-ai,
EVA-02, the SBB ``vit_*_rope_*`` models, DINOv3) all rotate channel pair m of a
patch token at grid coordinates t (N, 2) by the angle

    angle_m(t) = sum_k t_k F[k, m],

with a frequency matrix F and a coordinate grid that depend on the variant:

==========  ===============================  ======================================  ===========
rope_type   F (per layer / head?)            grid t                                  pairing
==========  ===============================  ======================================  ===========
cat         axis k owns pairs k*nb..: bands  index (+ offset), EVA's ref_feat_shape   either
mixed       learned (2, depth, heads, D/2)   index, 'xy' (RoPE-ViT mixed)             interleaved
dinov3      axis k owns pairs k*nb..: 2pi/P  centred, normalised to [-1, 1]           half
==========  ===============================  ======================================  ===========

(nb = head_dim / 4 bands, P the periods; coordinate channel 0 is the row for
``grid_indexing='ij'`` and the column for ``'xy'``.) ``read_rope`` returns F as
liere frequencies (L, 2, Hp, D/2) together with the grid rule (``TimmGrid``),
which computes the same coordinates as timm, in the graph (any image size, ONNX).

``init_from_frequencies`` then gives a liere encoding the same rotation:

* ``rope_axial`` (fixed) and ``rope_mixed`` (learned): the frequencies themselves;
* ``string`` (Cayley-STRING): the frequencies, with S = 0 so the basis P is the identity;
  fine-tuning then learns P (interleaved pairing only: P replaces any fixed pairing);
* ``liere`` with block size b (even): each b x b block carries b/2 pretrained
  pairs as 2 x 2 sub-blocks on its diagonal, the couplings between them start at 0;
* ``comrope_ld`` with block size b: one skew matrix per block times per-axis scales,
  exact when the pairs of each block turn along proportional frequency vectors
  (always for b = 2; for axial RoPE when a block never mixes axes).

Other methods have no exact start; ``convert(..., pretrained_rope="discard")``
builds them fresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["TimmGrid", "TimmRope", "read_rope", "init_from_frequencies", "EXACT_START"]

#: Methods that ``init_from_frequencies`` can start exactly from RoPE frequencies.
EXACT_START = ("rope_axial", "rope_mixed", "string", "liere", "comrope_ld")


@dataclass(frozen=True)
class TimmGrid:
    """timm's ``_build_grid`` (and its train-time coordinate augmentation) for a 2-D patch grid."""

    grid_type: str = "index"  # "index" | "pixel" | "centered"
    grid_offset: float = 0.0
    grid_indexing: str = "ij"
    ref_feat_shape: tuple[int, int] | None = None
    normalize_coords: str = "separate"
    shift_coords: float | None = None
    jitter_coords: float | None = None
    rescale_coords: float | None = None

    def positions(self, shape, device=None, training: bool = False) -> Tensor:
        """Coordinates (h*w, 2), row-major over (h, w) as timm flattens the patch tokens."""
        sizes = list(shape)
        ref = list(self.ref_feat_shape) if self.ref_feat_shape is not None else None
        if self.grid_indexing == "xy":
            sizes = sizes[::-1]
            ref = ref[::-1] if ref is not None else None
        f32 = torch.float32
        if self.grid_type == "pixel":
            axes = [torch.linspace(-1.0, 1.0, s, device=device, dtype=f32) for s in sizes]
        elif self.grid_type == "centered":
            if self.normalize_coords == "separate":
                denom = sizes
            elif self.normalize_coords in ("min", "max"):
                denom = [(min if self.normalize_coords == "min" else max)(sizes)] * len(sizes)
            else:
                raise ValueError(f"TimmGrid: unknown normalize_coords {self.normalize_coords!r}")
            axes = [(torch.arange(s, device=device, dtype=f32) + 0.5 + self.grid_offset) / d
                    for s, d in zip(sizes, denom)]
        elif self.grid_type == "index":
            axes = [torch.arange(s, device=device, dtype=f32) + self.grid_offset for s in sizes]
        else:
            raise ValueError(f"TimmGrid: unknown grid_type {self.grid_type!r}")
        if ref is not None:  # EVA's rule for other resolutions: map the grid onto the pretraining one
            axes = [a / s * r for a, s, r in zip(axes, sizes, ref)]
        grid = torch.stack(torch.meshgrid(*axes, indexing=self.grid_indexing), -1)
        if self.grid_type == "centered":
            grid = 2.0 * grid - 1.0
        grid = grid.reshape(-1, 2)
        if training:
            grid = self._augment(grid)
        return grid

    def _augment(self, coords: Tensor) -> Tensor:
        """timm's shift / jitter / rescale of the coordinates (training only), in timm's order of draws."""
        if self.shift_coords is not None:
            shift = torch.empty(2, device=coords.device).uniform_(-self.shift_coords, self.shift_coords)
            coords = coords + shift
        if self.jitter_coords is not None:
            top = math.log(self.jitter_coords)
            coords = coords * torch.empty(2, device=coords.device).uniform_(-top, top).exp()
        if self.rescale_coords is not None:
            top = math.log(self.rescale_coords)
            coords = coords * torch.empty(1, device=coords.device).uniform_(-top, top).exp()
        return coords


@dataclass(frozen=True)
class TimmRope:
    """What a timm model's RoPE is: frequencies (L, 2, Hp, D/2), pairing, grid rule, learned or fixed."""

    kind: str
    freqs: Tensor
    pairing: str
    grid: TimmGrid
    learned: bool

    @property
    def equivalent(self) -> str:
        """The liere method that is the same encoding: learned per-layer frequencies or fixed ones."""
        return "rope_mixed" if self.learned else "rope_axial"


def _axial_frequencies(bands: Tensor, head_dim: int) -> Tensor:
    """Axis k owns pairs [k*nb, (k+1)*nb), pair k*nb + j turns at bands[j]: (1, 2, 1, D/2)."""
    nb = bands.numel()
    if 4 * nb != head_dim:
        raise ValueError(f"convert: timm's RoPE has {nb} bands per axis for head_dim={head_dim}; "
                         f"only a RoPE over the whole head (head_dim = 4 x bands) is supported")
    freqs = torch.zeros(1, 2, 1, 2 * nb)
    for axis in range(2):
        freqs[0, axis, 0, axis * nb : (axis + 1) * nb] = bands.detach().float().cpu()
    return freqs


def _augmentation(rope) -> dict:
    return {name: getattr(rope, name, None) for name in ("shift_coords", "jitter_coords", "rescale_coords")}


def read_rope(model: nn.Module, head_dim: int) -> TimmRope | None:
    """The RoPE of a timm model (``model.rope``), or None when it has none."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return None
    kind = type(rope).__name__
    aug = _augmentation(rope)
    if kind == "RotaryEmbeddingMixed":
        freqs = rope.freqs.detach().float().cpu().permute(1, 0, 2, 3).contiguous()  # (depth, 2, H, D/2)
        grid = TimmGrid("index", 0.0, rope.grid_indexing, **aug)
        return TimmRope("mixed", freqs, "interleaved", grid, learned=True)
    if kind in ("RotaryEmbeddingCat", "RotaryEmbedding"):
        ref = tuple(int(s) for s in rope.ref_feat_shape) if rope.ref_feat_shape is not None else None
        grid = TimmGrid(rope.grid_type, float(rope.grid_offset), rope.grid_indexing, ref, rope.normalize_coords, **aug)
        pairing = "half" if rope.rotate_half else "interleaved"
        return TimmRope("cat", _axial_frequencies(rope.bands, head_dim), pairing, grid, learned=False)
    if kind == "RotaryEmbeddingDinoV3":
        grid = TimmGrid("centered", float(rope.grid_offset), rope.grid_indexing, None, rope.normalize_coords, **aug)
        pairing = "half" if rope.rotate_half else "interleaved"
        bands = 2 * math.pi / rope.periods.detach().double()
        return TimmRope("dinov3", _axial_frequencies(bands, head_dim), pairing, grid, learned=False)
    raise TypeError(f"convert: timm's {kind} is not supported (supported: RotaryEmbeddingCat, RotaryEmbeddingMixed, "
                    f"RotaryEmbeddingDinoV3)")


# ----- liere encodings that start from the frequencies --------------------------------------
def _fit(freqs: Tensor, layers: int, heads: int, what: str) -> Tensor:
    """Frequencies (L, d, Hp, M) broadcast to a method's (layers, d, heads, M), or a clear error."""
    l, d, h, m = freqs.shape
    if l not in (1, layers) and not torch.equal(freqs, freqs[:1].expand_as(freqs)):
        raise ValueError(f"convert: the pretrained RoPE has its own frequencies in each of {l} layers; "
                         f"{what} has {layers} set(s) (leave share_layers unset)")
    if h not in (1, heads) and not torch.equal(freqs, freqs[:, :, :1].expand_as(freqs)):
        raise ValueError(f"convert: the pretrained RoPE has its own frequencies per head; {what} shares them "
                         f"(leave share_heads unset)")
    freqs = freqs if l == layers else freqs[:1]
    freqs = freqs if h == heads else freqs[:, :, :1]
    return freqs.expand(layers, d, heads, m)


@torch.no_grad()
def init_from_frequencies(pe: nn.Module, freqs: Tensor) -> nn.Module:
    """Set ``pe`` so that its rotation equals the planar one of ``freqs`` (L, d, Hp, head_dim/2); returns pe.

    The pairs are in liere's interleaved basis (pair m = channels 2m, 2m+1 of it; with
    ``pe.pairing == "half"`` that is channels m and m + D/2 of the head).
    """
    name = pe.name
    m = freqs.shape[-1]
    if 2 * m != pe.head_dim:
        raise ValueError(f"convert: {m} pretrained pairs for head_dim={pe.head_dim}")
    tensors = [*pe.parameters(), *pe.buffers()]
    freqs = freqs.to(tensors[0].device if tensors else freqs.device)
    if name == "rope_axial":
        if freqs.shape[0] != 1 or freqs.shape[2] != 1:
            raise ValueError("convert: 'rope_axial' has fixed frequencies shared by layers and heads; this RoPE "
                             "learns them per layer and head: use 'rope_mixed'")
        pe.freqs = freqs.float().clone()
        return pe
    if name == "rope_mixed":
        pe.freqs.copy_(_fit(freqs, pe.param_layers, pe.param_heads, "rope_mixed"))
        return pe
    if name == "string":
        if getattr(pe, "rotary_dim", None) not in (None, pe.head_dim):
            raise ValueError(f"convert: an exact start of 'string' from RoPE needs rotary_dim = head_dim "
                             f"({pe.head_dim}), got {pe.rotary_dim}")
        with torch.no_grad():
            pe.freqs.copy_(_fit(freqs, pe.param_layers, pe.param_heads, "string"))
            pe.skew_upper.zero_()
        return pe
    if name not in EXACT_START:
        raise ValueError(f"convert: {name!r} has no exact start from a pretrained RoPE (methods with one: "
                         f"{', '.join(EXACT_START)}); pass pretrained_rope='discard' to start it fresh")
    b = pe.block_size
    if b % 2 or pe.head_dim % b:
        raise ValueError(f"convert: an exact start from RoPE needs an even block_size dividing head_dim="
                         f"{pe.head_dim}, got {b}")
    half = b // 2
    if name == "liere":
        pairs = _fit(freqs, pe.param_layers, pe.param_heads, "liere").unflatten(-1, (pe.num_blocks, half))
        rows, cols = torch.triu_indices(b, b, offset=1)
        pe.upper.zero_()
        for i in range(half):  # sub-block i of each block: channels (2i, 2i+1), A[2i, 2i+1] = -f
            index = int(((rows == 2 * i) & (cols == 2 * i + 1)).nonzero())
            pe.upper[..., index] = -pairs[..., i]
        return pe
    if name == "comrope_ld":
        pairs = _fit(freqs, pe.param_layers, pe.param_heads, "comrope_ld").unflatten(-1, (pe.num_blocks, half))
        # Per block: a reference direction u (the pair with the largest frequency) and f_i = c_i u.
        norms = pairs.norm(dim=1)  # (L, Hp, M, half)
        ref = norms.argmax(-1)  # (L, Hp, M)
        u = torch.gather(pairs, -1, ref[:, None, :, :, None].expand(-1, pairs.shape[1], -1, -1, 1))[..., 0]
        unorm2 = (u * u).sum(1).clamp_min(1e-30)  # (L, Hp, M)
        c = (pairs * u[..., None]).sum(1) / unorm2[..., None]  # (L, Hp, M, half)
        residual = (pairs - c[:, None] * u[..., None]).norm(dim=1)
        if bool((residual > 1e-6 * (1 + unorm2.sqrt()[..., None])).any()):
            raise ValueError(f"convert: 'comrope_ld' with block_size={b} has no exact start from this RoPE: a block "
                             f"holds pairs whose frequencies are not proportional (block_size=2 always works)")
        j = torch.tensor([[0.0, -1.0], [1.0, 0.0]], device=c.device)
        skew = torch.zeros(*c.shape[:3], b, b, device=c.device)
        for i in range(half):
            skew[..., 2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = c[..., i, None, None] * j
        pe.matrices.copy_(skew / 2)  # P - P^T = S for P = S / 2
        pe.scales.copy_(u)
    return pe
