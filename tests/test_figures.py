"""Static pictures of the explorer: the learning curve holds every point it draws and says what it is before the
first round; a region layer's picture and legend are drawn by the views, from the layer's values."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from wcembed.explore.compute.layers import ChipRaster
from wcembed.explore.views.figures import curve_figure, layer_figure
from wcembed.explore.views.styles import legend_html
from wcembed.tools.plots import figure_png


def test_the_learning_curve_holds_every_point_it_draws():
    history = [(4, 0.0), (6, 0.0), (8, 0.0), (10, 0.1)]  # cross-validation can report 0
    ax = curve_figure(history).axes[0]
    (line,) = ax.get_lines()[:1]
    lo, hi = ax.get_ylim()
    assert list(line.get_ydata()) == [0.0, 0.0, 0.0, 0.1] and lo < 0.0 and hi > 1.0
    assert ax.get_xlim()[1] > 10


def test_before_the_first_round_the_curve_says_so():
    fig = curve_figure([])
    assert [t.get_text() for t in fig.axes[0].texts] == ["the curve starts at the first retrain"]
    picture = Image.open(io.BytesIO(figure_png(fig)))
    assert picture.size[0] > 100 and np.asarray(picture.convert("L")).std() > 0  # a picture, not a broken image


def test_a_layers_legend_and_picture_are_the_views():
    raster = ChipRaster.from_chips(np.array([1156, 1157]), np.array([288, 288]), np.array([0.2, 0.9]),
                                   name="similarity 2020", description="to 2020-1156-0288", cmap="viridis")  # fmt: skip
    html = legend_html(raster)
    assert "similarity 2020" in html and "to 2020-1156-0288" in html and "linear-gradient" in html
    ax = layer_figure(raster)
    assert ax.get_title().startswith("similarity 2020") and ax.get_xlabel() == "longitude (°)"
