"""Pictures of a run: sample grids (Pillow), scatter plots and loss curves (matplotlib,
Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def image_grid(images: torch.Tensor, path, *, row_labels: list[str] | None = None, cell: int = 32, pad: int = 2) -> None:
    """Save images [rows, cols, C, H, W] in [-1, 1] as one PNG, one row per condition;
    small images are enlarged (nearest neighbour) to about `cell` pixels."""
    from PIL import Image, ImageDraw

    rows, cols, channels, h, w = images.shape
    scale = max(1, cell // max(h, w))
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.permute(0, 1, 3, 4, 2).numpy()  # rows, cols, H, W, C
    if scale > 1:
        pixels = pixels.repeat(scale, axis=2).repeat(scale, axis=3)
    ch, cw = h * scale, w * scale
    label_width = 0
    if row_labels:
        label_width = 8 + 6 * max(len(label) for label in row_labels)
    canvas = np.full((pad + rows * (ch + pad), label_width + pad + cols * (cw + pad), channels), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (ch + pad), label_width + pad + c * (cw + pad)
            canvas[top:top + ch, left:left + cw] = pixels[r, c]
    image = Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas, "L" if channels == 1 else "RGB")
    if row_labels:
        draw = ImageDraw.Draw(image)
        for r, label in enumerate(row_labels):
            draw.text((4, pad + r * (ch + pad) + ch // 2 - 5), label, fill=0)
    _save(image, path)


def _save(image, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def vector_plot(samples: torch.Tensor, path, *, row_labels: list[str] | None = None, real: torch.Tensor | None = None) -> None:
    """Vector samples [rows, n, D], one group per condition: a scatter plot for 2-D data
    (over the real points in grey), else a heat map with one band of rows per group."""
    plt = _pyplot()
    samples = samples.detach().float().cpu()
    rows, n, dim = samples.shape
    labels = row_labels or [str(r) for r in range(rows)]
    fig, ax = plt.subplots(figsize=(6, 6) if dim == 2 else (8, 6))
    if dim == 2:
        if real is not None:
            ax.scatter(*real.float().cpu()[:, :2].T, s=2, c="0.8", label="data")
        # Matplotlib's default cycle repeats after 10 colours; spread more over a colormap.
        colors = [None] * rows if rows <= 10 else plt.cm.gist_rainbow(np.linspace(0, 1, rows))
        for r in range(rows):
            ax.scatter(*samples[r].T, s=4, color=colors[r], label=labels[r] if rows > 1 else "samples")
        ax.set_aspect("equal")
        if rows <= 12:
            ax.legend(markerscale=3, fontsize="small", loc="upper right")
    else:
        ax.imshow(samples.reshape(rows * n, dim).numpy(), aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_yticks([r * n + n / 2 for r in range(rows)], labels)
        ax.set_xlabel("feature")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_curve(history: list[dict], path) -> None:
    """D and G losses (and the R1 penalty, if any) against the step."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history]
    for key, label in (("d_loss", "D loss"), ("g_loss", "G loss"), ("r1", "R1 penalty")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(steps, [np.nan if v is None else v for v in values], label=label, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
