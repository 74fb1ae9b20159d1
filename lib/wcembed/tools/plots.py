"""Static figures for notebooks read without a kernel: a column's chips by principal component, PNG bytes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from wcembed.core.store import read_column


def first_principal_component(vectors: np.ndarray) -> np.ndarray:
    """Projection of each row of ``vectors`` on their first principal component (0 for fewer than 2 rows)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x))
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[0]


def pca_map(path: str | list[str], ax=None):
    """Plot the chips of a column file (or of several) coloured by the first principal component of their
    embeddings."""
    import matplotlib.pyplot as plt  # deferred: only to draw

    frames = [read_column(p) for p in ([path] if isinstance(path, str) else path)]
    gdf = pd.concat([f[0] for f in frames], ignore_index=True)
    vectors = np.concatenate([f[1] for f in frames])
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


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt  # deferred: only to draw

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
