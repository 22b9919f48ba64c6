"""STRING (Schenck et al. 2025, "Learning the RoPEs: Better 2D and 3D Position
Encodings with STRING", arXiv 2502.02562): commuting learned generators, written
as RoPE in a learned orthogonal basis.

Generators that commute are simultaneously block-diagonalisable by one
orthogonal P, so

    R(p) = exp( sum_k p_k L_k ) = P . RoPE(p) . P^T,   L_k = P . blockdiag_j(f_{k,j} J) . P^T,

with RoPE(p) = blockdiag_j(rot(<f_j, p>)) the RoPE-Mixed rotation of learned
frequencies f (initialised as RoPE-Mixed). The encoding is relative, like
every commuting method. Two parametrisations of P:

* ``string`` (Cayley-STRING): P = (I - S)(I + S)^{-1}, S a learned skew matrix
  per head and layer, initialised to 0 (P = I: training starts at RoPE-Mixed).
  With ``pos_dims=1`` this is Lrpe's W_t = P Lambda^t P^H, and also 1-D LieRE
  with a dense generator A = P (blockdiag f_j J) P^T (its real Schur form).
* ``string_circulant`` (Circulant-STRING): L_k = C_k - C_k^T with C_k a learned
  circulant matrix (first column c_k). Circulant matrices share the Fourier
  eigenbasis F, fixed, so P = F and only the frequencies depend on c:
  f_{k,j} = s_j^T L_k c_j for the cos/sin Fourier vectors c_j, s_j of
  frequency j = 1 .. ceil(D/2) - 1 (the constant and alternating vectors have
  eigenvalue 0 and stay put). The change of basis is a real DFT, so eager
  ``forward`` applies R(p) x = irfft(rfft(x) . exp(-i theta(p))), O(D log D)
  per token; traced code (compile, ONNX) multiplies by the real eigenbasis
  instead (no complex tensors), which also folds into W_q and W_k.

P is carried by the ``Rotation`` as its ``basis`` and applied as P^T before and
P after the cos/sin rotation. At inference ``fold_basis()`` hands P to the model
(``ViT.fold_position_basis``), which multiplies it into the query and key
projections, after which the encoding is plain RoPE-Mixed: the attention logits
<P R0 P^T q, P R0 P^T k> = <R0 (P^T q), R0 (P^T k)> are unchanged.
Only the first ``rotary_dim`` channels (default head_dim) are rotated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops.apply import check_rotation_fits
from ..rotation import Rotation
from .._compat import tracing
from .base import PlanarEncoding, finite_float, skew_from_upper
from .rope_mixed import initial_frequencies

__all__ = ["CayleySTRING", "CirculantSTRING", "cayley", "fourier_basis"]


def cayley(skew: Tensor) -> Tensor:
    """P = (I - S)(I + S)^{-1}, orthogonal for skew S (the two factors commute)."""
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype, device=skew.device)
    return torch.linalg.solve(eye + skew, eye - skew)


def fourier_basis(size: int) -> Tensor:
    """Real eigenbasis (size, size) of the circulant matrices, float64.

    Columns 2(j-1), 2(j-1)+1 are sqrt(2/D) cos(2 pi j n / D) and sqrt(2/D) sin(2 pi j n / D)
    for j = 1 .. ceil(D/2) - 1; then the constant vector and, for even D, the alternating one.
    """
    n = torch.arange(size, dtype=torch.float64)
    cols = []
    for j in range(1, (size + 1) // 2):
        angle = 2 * math.pi * j * n / size
        cols += [math.sqrt(2 / size) * torch.cos(angle), math.sqrt(2 / size) * torch.sin(angle)]
    cols.append(torch.full((size,), 1 / math.sqrt(size), dtype=torch.float64))
    if size % 2 == 0:
        cols.append((-1.0) ** n / math.sqrt(size))
    return torch.stack(cols, 1)


def circulant(c: Tensor) -> Tensor:
    """circ(c)[..., i, j] = c[..., (i - j) mod D]."""
    size = c.shape[-1]
    idx = (torch.arange(size)[:, None] - torch.arange(size)[None, :]) % size
    return c[..., idx.to(c.device)]


class _String(PlanarEncoding):
    """RoPE-Mixed frequencies in an orthogonal basis of the first rotary_dim channels."""

    commuting = True
    default_convention = "index"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.pairing != "interleaved":
            # P is a learned orthogonal change of basis; a fixed channel pairing is one particular P, and
            # the basis-carrying apply paths work in the interleaved order only.
            raise ValueError(f"pairing: {self.name} learns its own channel basis P, so it takes only "
                             f"pairing='interleaved', got {self.pairing!r}")
        self.folded = False

    def basis(self) -> Tensor:
        """P, shape (L or 1, Hp or 1, rotary_dim, rotary_dim)."""
        raise NotImplementedError

    def fold_basis(self) -> Tensor:
        """Return P (detached) and drop it from the encoding: the caller multiplies it into W_q and W_k."""
        if self.folded:
            raise RuntimeError(f"{self.name}: the basis is already folded")
        with torch.no_grad():
            p = self.basis().detach().clone()
        self.folded = True
        self._cache.clear()
        return p

    def _compute(self, positions: Tensor) -> Rotation:
        rotation = super()._compute(positions)
        if self.folded:
            return rotation
        return Rotation(self.head_dim, cos=rotation.cos, sin=rotation.sin, basis=self.basis().to(positions.dtype))

    def generators(self, layer: int = 0) -> Tensor:
        planar = super().generators(layer)  # (d, H, D, D) in the basis
        if self.folded:
            return planar
        r = self.rotary_dim
        p = self.basis().to(planar.dtype)
        p = p[self._param_layer(layer) if p.shape[0] > 1 else 0]  # (Hb, r, r)
        full = torch.eye(self.head_dim, dtype=planar.dtype, device=planar.device).repeat(p.shape[0], 1, 1)
        full[:, :r, :r] = p
        return full @ planar @ full.transpose(-1, -2)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", folded=True" if self.folded else "")


class CayleySTRING(_String):
    name = "string"
    options = ("theta", "rotate")

    def __init__(self, *, theta: float = 10.0, rotate: bool = True, **kwargs):
        super().__init__(**kwargs)
        theta = finite_float("theta", theta, positive=True)
        freqs = initial_frequencies(self.param_layers, self.pos_dims, self.param_heads, self.num_blocks, theta, rotate)
        self.freqs = nn.Parameter(freqs)
        r = self.rotary_dim
        self.skew_upper = nn.Parameter(torch.zeros(self.param_layers, self.param_heads, r * (r - 1) // 2))

    def frequencies(self) -> Tensor:
        return self.freqs

    def skew(self) -> Tensor:
        """S, (L, Hp, r, r)."""
        return skew_from_upper(_fp32(self.skew_upper), self.rotary_dim)

    def basis(self) -> Tensor:
        return cayley(self.skew())


def _fp32(t: Tensor) -> Tensor:
    """Learned values are used in float32 math, also after ``.half()`` / ``.to(bfloat16)``."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class CirculantSTRING(_String):
    name = "string_circulant"
    options = ("theta", "rotate")

    def __init__(self, *, theta: float = 10.0, rotate: bool = True, **kwargs):
        super().__init__(**kwargs)
        theta = finite_float("theta", theta, positive=True)
        r = self.rotary_dim
        if r < 3:
            raise ValueError(f"rotary_dim: string_circulant needs at least 3 channels, got {r}")
        self.num_blocks = (r - 1) // 2  # Fourier frequencies 1 .. ceil(r/2) - 1
        self._register_fixed("fourier")  # (1, 1, r, r)
        self._register_fixed("transfer")  # (r, M)
        transfer = self.transfer.double()
        # Start at RoPE-Mixed's frequencies: the least-norm c with c @ T = f0.
        target = initial_frequencies(self.param_layers, self.pos_dims, self.param_heads, self.num_blocks, theta,
                                     rotate).double()
        self.columns = nn.Parameter((target @ torch.linalg.pinv(transfer)).float())  # (L, d, Hp, r)

    def _make_buffer(self, name: str) -> Tensor:
        if name not in ("fourier", "transfer"):
            return super()._make_buffer(name)
        r = self.rotary_dim
        f = fourier_basis(r)
        if name == "fourier":
            return f.float()[None, None]
        # T[n, j] = s_j^T (circ(e_n) - circ(e_n)^T) c_j, so frequencies = c @ T (linear in c).
        shifts = circulant(torch.eye(r, dtype=torch.float64))  # (r, r, r): shifts[n] = circ(e_n)
        gens = shifts - shifts.transpose(-1, -2)
        cos_v, sin_v = f[:, 0 : 2 * self.num_blocks : 2], f[:, 1 : 2 * self.num_blocks : 2]
        return torch.einsum("ij,nik,kj->nj", sin_v, gens, cos_v).float()

    def frequencies(self) -> Tensor:
        columns = _fp32(self.columns)
        return columns @ self.transfer.to(columns.dtype)

    def basis(self) -> Tensor:
        return self.fourier.to(_fp32(self.columns).dtype)

    def forward(self, q: Tensor, k: Tensor, positions_or_rotation, *, layer: int = 0):
        rotation = positions_or_rotation
        if not isinstance(rotation, Rotation):
            rotation = self.rotation(rotation)
        rotation = rotation.layer(self._check_layer(layer))
        if rotation.basis is None or tracing() or not rotation.is_planar:
            return super().forward(q, k, rotation, layer=layer)
        check_rotation_fits(q, rotation, self.layout, "q")
        check_rotation_fits(k, rotation, self.layout, "k")
        if q.numel() == 0:  # an empty batch: nothing to rotate
            return q.clone(), k.clone()
        return self._rotate_fft(q, rotation), self._rotate_fft(k, rotation)

    def _rotate_fft(self, x: Tensor, rotation: Rotation) -> Tensor:
        """R(p) x by FFT: the pair (cos, sin) of Fourier frequency j turns by theta_j, i.e. X_j <- X_j e^{-i theta_j}."""
        r, m = self.rotary_dim, rotation.num_blocks
        xb = x if self.layout == "bhnd" else x.transpose(1, 2)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.promote_types(torch.promote_types(x.dtype, rotation.dtype), torch.float32)
            spectrum = torch.fft.rfft(xb[..., :r].to(dtype), dim=-1)  # (B, H, N, r // 2 + 1)
            c, s = rotation.cos[0].to(dtype), rotation.sin[0].to(dtype)  # (Bp, Hp, N, M)
            turn = torch.complex(c, -s)
            spectrum = torch.cat((spectrum[..., :1], spectrum[..., 1 : m + 1] * turn, spectrum[..., m + 1 :]), -1)
            head = torch.fft.irfft(spectrum, n=r, dim=-1)
        out = head if r == x.shape[-1] else torch.cat((head, xb[..., r:].to(head.dtype)), -1)
        out = out.to(x.dtype)
        return out if self.layout == "bhnd" else out.transpose(1, 2)

    def generators(self, layer: int = 0) -> Tensor:
        """L_k = C_k - C_k^T, built from the circulant columns directly (not through the eigenbasis)."""
        if self.folded:
            return super().generators(layer)
        c = self.columns[self._param_layer(layer)]  # (d, Hp, r)
        circ = circulant(c)
        dense = c.new_zeros(*c.shape[:2], self.head_dim, self.head_dim)
        dense[..., : self.rotary_dim, : self.rotary_dim] = circ - circ.transpose(-1, -2)
        return dense.expand(self.pos_dims, self.num_heads, self.head_dim, self.head_dim)
