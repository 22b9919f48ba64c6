"""What a trained rotary encoding learned, per layer and head (pure functions; ``liere inspect`` draws them).

For the generators A_k of one layer (``pe.generators(layer)``, (d, H, D, D)):

* **commutators**: ||[A_i, A_j]||_F / (||A_i||_F ||A_j||_F) for each pair of axes, (H, d, d);
  0 for every commuting method, and scale-free, so layers and methods compare.
* **relativity error**: with M(p, p') = R(p)^T R(p') the logit q^T M k of two tokens, the largest
  ||M(p + delta, p' + delta) - M(p, p')||_2 over pairs of grid positions and offsets delta, i.e. the
  largest change of the attention logit of unit-norm q and k when both positions move by the same
  offset. 0 (up to float32 rounding) for commuting methods, which are relative.
* **frequencies**: the rotation frequencies of each generator, its eigenvalues +-i w (w >= 0, the
  D/2 largest), in radians per unit of position; times the grid spacing, radians per patch step,
  which compares with RoPE's theta^(-j/m) whatever the position convention.

``inspect_model(vit)`` gathers them for a model; ``write_report`` saves a JSON, PNGs and returns a
short text table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["commutators", "relativity_error", "frequencies", "rope_reference", "inspect_encoding",
           "inspect_model", "write_report", "format_table"]


def commutators(gens: Tensor) -> Tensor:
    """(H, d, d) normalised commutator norms of generators (d, H, D, D); 0 where a generator is 0."""
    g = gens.detach().double().transpose(0, 1)  # (H, d, D, D)
    ai, aj = g[:, :, None], g[:, None, :]
    comm = torch.linalg.matrix_norm(ai @ aj - aj @ ai)
    norms = torch.linalg.matrix_norm(g)
    denom = norms[:, :, None] * norms[:, None, :]
    return torch.where(denom > 0, comm / denom.clamp_min(1e-300), torch.zeros_like(comm)).float()


def default_offsets(positions: Tensor) -> Tensor:
    """One grid step along each axis, and one along the diagonal: (d + 1, d)."""
    d = positions.shape[-1]
    steps = []
    for k in range(d):
        values = torch.unique(positions[:, k])
        diffs = values[1:] - values[:-1]
        steps.append(float(diffs.min()) if diffs.numel() else 1.0)
    step = torch.tensor(steps, dtype=positions.dtype)
    return torch.cat((torch.diag(step), step[None]), 0)


@torch.no_grad()
def relativity_error(pe, positions: Tensor, layer: int = 0, offsets: Tensor | None = None,
                     max_positions: int = 16) -> Tensor:
    """(H,) largest spectral norm of M(p + delta, p' + delta) - M(p, p') over pairs and offsets.

    ``positions`` (N, d) are the grid; at most ``max_positions`` of them (evenly spaced) are used.
    Prefix tokens (CLS, registers) have no position to move and are left out.
    """
    prefix = getattr(pe, "num_prefix_tokens", 0)
    positions = positions.float()
    if positions.shape[0] > max_positions:
        idx = torch.linspace(0, positions.shape[0] - 1, max_positions).round().long()
        positions = positions[idx]
    offsets = default_offsets(positions) if offsets is None else offsets.float()
    base = pe.rotation_matrix(positions, layer).double()[:, prefix:]  # (H, N, D, D)
    m0 = base.transpose(-1, -2)[:, :, None] @ base[:, None]  # (H, N, N, D, D)
    worst = torch.zeros(base.shape[0], dtype=torch.float64)
    for delta in offsets:
        moved = pe.rotation_matrix(positions + delta, layer).double()[:, prefix:]
        m1 = moved.transpose(-1, -2)[:, :, None] @ moved[:, None]
        err = torch.linalg.matrix_norm(m1 - m0, ord=2).flatten(1).amax(1)
        worst = torch.maximum(worst, err)
    return worst.float()


def frequencies(gens: Tensor) -> Tensor:
    """(d, H, D // 2) rotation frequencies of each generator, ascending: w for eigenvalues +-i w."""
    g = gens.detach().to(torch.complex128)
    w = torch.linalg.eigvalsh(1j * g)  # real, ascending, in +- pairs
    half = g.shape[-1] // 2
    return w[..., -half:].float() if half else w[..., :0].float()


def rope_reference(head_dim: int, pos_dims: int, theta: float = 100.0) -> Tensor:
    """Axial RoPE's frequencies (RoPE-ViT, integer positions) in radians per patch step, ascending."""
    import liere

    pe = liere.build("rope_axial", pos_dims=pos_dims, head_dim=head_dim, num_heads=1, theta=theta)
    f = pe.frequencies()[0, :, 0]  # (d, M)
    return f.amax(0).sort().values


def inspect_encoding(pe, positions: Tensor, spacing: Tensor | None = None) -> dict:
    """Per-layer diagnostics of a rotary encoding over the grid ``positions`` (N, d)."""
    if not getattr(pe, "rotary", False):
        raise ValueError(f"{getattr(pe, 'name', type(pe).__name__)!s}: not a rotary encoding; nothing to inspect")
    spacing = default_offsets(positions)[: pe.pos_dims].diagonal() if spacing is None else spacing
    layers = []
    for layer in range(pe.param_layers):
        gens = pe.generators(layer)
        freqs = frequencies(gens)  # (d, H, D/2)
        layers.append({
            "layer": layer,
            "commutators": commutators(gens).tolist(),
            "relativity_error": relativity_error(pe, positions, layer).tolist(),
            "frequencies": freqs.tolist(),
            "frequencies_per_patch": (freqs * spacing.float().view(-1, 1, 1)).tolist(),
        })
    return {
        "method": pe.name,
        "commuting": pe.commuting,
        "pos_dims": pe.pos_dims,
        "head_dim": pe.head_dim,
        "num_heads": pe.num_heads,
        "layers_with_own_generators": pe.param_layers,
        "grid_spacing": spacing.tolist(),
        "rope_frequencies_per_patch": rope_reference(pe.head_dim, pe.pos_dims).tolist(),
        "layers": layers,
    }


def inspect_model(model) -> dict:
    """``inspect_encoding`` of a model's encoding (ViT or text LM) on its training grid and convention."""
    import liere

    shape = tuple(getattr(model, "grid_shape", None) or (model.context_length,))
    positions = model.train_positions
    spacing = torch.tensor([liere.positions.train_spacing(n, model.convention)[1] for n in shape])
    report = inspect_encoding(model.pe, positions, spacing)
    report["convention"] = model.convention
    report["grid_shape"] = list(shape)
    return report


def format_table(report: dict) -> str:
    """One line per layer: largest commutator, largest relativity error, frequency range per patch."""
    lines = [f"{report['method']} ({'commuting' if report['commuting'] else 'non-commuting'}), "
             f"{report['num_heads']} heads x {report['head_dim']} channels, {report['pos_dims']}-D positions",
             f"{'layer':>5}  {'max commutator':>14}  {'max relativity err':>18}  {'freq/patch min':>14}  "
             f"{'median':>8}  {'max':>8}"]
    for layer in report["layers"]:
        comm = max((v for head in layer["commutators"] for row in head for v in row), default=0.0)
        rel = max(layer["relativity_error"], default=0.0)
        f = torch.tensor(layer["frequencies_per_patch"]).flatten()
        f = f[f > 0] if (f > 0).any() else f
        lo, med, hi = (float(f.min()), float(f.median()), float(f.max())) if f.numel() else (0.0, 0.0, 0.0)
        lines.append(f"{layer['layer']:>5}  {comm:>14.3g}  {rel:>18.3g}  {lo:>14.3g}  {med:>8.3g}  {hi:>8.3g}")
    rope = report["rope_frequencies_per_patch"]
    lines.append(f"RoPE (axial, theta 100) per patch: {min(rope):.3g} .. {max(rope):.3g}")
    return "\n".join(lines)


def write_report(report: dict, out: str | Path) -> dict:
    """Write report.json and PNGs (commutators, relativity, frequencies) to ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    layers = report["layers"]
    n_layers, heads, d = len(layers), report["num_heads"], report["pos_dims"]
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    paths = {"json": str(out / "report.json")}

    # Commutators: a (layer x head) heatmap per pair of axes.
    if pairs:
        fig, axes = plt.subplots(1, len(pairs), figsize=(3.4 * len(pairs) + 1.2, 0.35 * n_layers + 2.4), squeeze=False,
                                 layout="constrained")
        vmax = max(1e-12, max(layer["commutators"][h][i][j] for layer in layers for h in range(heads)
                              for i, j in pairs))
        for ax, (i, j) in zip(axes[0], pairs):
            grid = [[layer["commutators"][h][i][j] for h in range(heads)] for layer in layers]
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
            ax.set(title=f"||[A{i}, A{j}]|| / (||A{i}|| ||A{j}||)", xlabel="head", ylabel="layer",
                   xticks=range(heads), yticks=range(n_layers))
        fig.colorbar(im, ax=axes[0].tolist())
        fig.suptitle(f"{report['method']}: how far the generators are from commuting", fontsize=10)
        fig.savefig(out / "commutators.png", dpi=110)
        plt.close(fig)
        paths["commutators"] = str(out / "commutators.png")

    # Relativity error: (layer x head).
    fig, ax = plt.subplots(figsize=(0.5 * heads + 3, 0.35 * n_layers + 2))
    grid = [layer["relativity_error"] for layer in layers]
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0)
    for li, row in enumerate(grid):
        for h, v in enumerate(row):
            ax.text(h, li, f"{v:.2g}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 * max(
                max(grid, key=max)) else "k")
    ax.set(title=f"{report['method']}: largest logit change under a common shift\n(unit q, k; 0 = relative)",
           xlabel="head", ylabel="layer", xticks=range(heads), yticks=range(n_layers))
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "relativity.png", dpi=110)
    plt.close(fig)
    paths["relativity"] = str(out / "relativity.png")

    # Frequencies per layer against RoPE's.
    cols = min(4, n_layers)
    rows = math.ceil(n_layers / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False, sharey=True)
    rope = report["rope_frequencies_per_patch"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for idx, layer in enumerate(layers):
        ax = axes[idx // cols][idx % cols]
        f = layer["frequencies_per_patch"]  # (d, H, D/2)
        for k in range(d):
            for h in range(heads):
                ax.plot(range(len(f[k][h])), f[k][h], ".-", lw=0.8, ms=3, color=colors[k % len(colors)], alpha=0.7,
                        label=f"axis {k}" if h == 0 else None)
        ax.plot(range(len(rope)), rope, "k--", lw=1.2, label="RoPE-ViT axial, θ=100")
        ax.set_yscale("log")
        ax.set(title=f"layer {layer['layer']}", xlabel="eigen-pair (ascending)")
        if idx % cols == 0:
            ax.set_ylabel("radians per patch step")
    for idx in range(n_layers, rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{report['method']}: rotation frequencies of each generator (all heads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "frequencies.png", dpi=110)
    plt.close(fig)
    paths["frequencies"] = str(out / "frequencies.png")
    return paths
