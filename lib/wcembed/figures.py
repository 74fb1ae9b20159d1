"""Static figures of embeddings, for executed notebooks that are read without a kernel."""

from __future__ import annotations

import io

import numpy as np

from wcembed.store import read_column


def first_principal_component(vectors: np.ndarray) -> np.ndarray:
    """Projection of each row of ``vectors`` on their first principal component (0 for fewer than 2 rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[0]


def pca_map(path: str, ax=None):
    """Plot a column file's chips coloured by the first principal component of their embeddings."""
    import matplotlib.pyplot as plt

    gdf, vectors = read_column(path)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 6))
    if len(gdf) == 0:
        ax.set_title("no chip above the valid threshold")
        return ax
    gdf["pc1"] = first_principal_component(vectors)
    gdf.plot(column="pc1", cmap="viridis", edgecolor="white", linewidth=0.3, legend=True, ax=ax)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(f"{len(gdf)} chips, first principal component")
    return ax


def gallery_figure(results, thumbs, layer: str, size: int = 160):
    """A static figure of the results' WMS thumbnails with rank and distance (for executed notebooks)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    n = len(results)
    cols = min(n, 5) or 1
    nrows = (n + cols - 1) // cols or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(2.2 * cols, 2.5 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (_, row) in zip(axes.ravel(), results.iterrows(), strict=False):
        png = thumbs.thumbnail(tuple(row.geometry.bounds), layer, (size, size))
        ax.imshow(Image.open(io.BytesIO(png)))
        ax.set_title(f"#{row['rank']} d={row['distance']:.4f}\n{row['chip_id']}", fontsize=8)
    fig.tight_layout()
    return fig
