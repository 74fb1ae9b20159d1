"""From a few examples to a map of everything like them: labels, a classifier, scores.

* :class:`Labels`: chips marked positive or negative, saved to and loaded from
  GeoJSON (``chip_id``, ``year``, ``label``, footprint), so a session can be
  resumed and shared.
* :func:`train`: logistic regression on the embeddings' directions (unit
  vectors, as every search and layer compares them), with **spatially
  blocked** cross-validation: chips are grouped into blocks of
  ``block_deg`` degrees and a block is never split across folds, so nearby
  (and alike) chips cannot leak between training and test.
* :func:`score_index`: the classifier's probability for every chip of the
  index, computed over Arrow record batches (no per-row loop), written as
  GeoParquet (``chip_id``, ``year``, ``score``, footprint).
* :func:`export`: search or classifier results as GeoParquet or GeoJSON.
* :func:`detections`: the chips scored at or above a threshold, adjacent chips
  dissolved into one polygon each, with their mean score and chip ids.
* :func:`suggest_next`: which unlabelled chips to label next: the uncertain
  ones, spread out in space and in embedding space.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from wcembed.core.contract import write_geoparquet
from wcembed.core.errors import BadInputError, BadParameterError, LabelsError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_bounds, parse_chip_id
from wcembed.core.product import CRS, check_year
from wcembed.core.store import vector_matrix

log = logging.getLogger(__name__)

LABELS = ("positive", "negative")


class Labels:
    """Chips labelled positive or negative, keyed by ``chip_id``.

    >>> labels = Labels()
    >>> labels.add("2020-1156-0288", "positive", year=2020, bounds=(-75.64, 37.65, -75.59, 37.69))
    >>> labels.positives
    ['2020-1156-0288']
    """

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Labels) and self.items == other.items

    def copy(self) -> Labels:
        """A new :class:`Labels` with the same labels (an observable model replaces its labels, never edits them)."""
        new = Labels()
        new.items = {chip: dict(v) for chip, v in self.items.items()}
        return new

    def add(self, chip_id: str, label: str, *, year: int, bounds: tuple[float, float, float, float]) -> None:
        """Label a chip (replacing an earlier label). ``bounds``: its footprint in degrees (west, south, east,
        north). :class:`LabelsError` for an id that is not a chip id of ``year`` or bounds that are not a box."""
        if label not in LABELS:
            raise LabelsError(f"label must be one of {LABELS}, not {label!r}")
        try:
            id_year, column, row = parse_chip_id(chip_id)
            year = check_year(year)
        except BadInputError as exc:
            raise LabelsError(str(exc)) from None
        if id_year != year:
            raise LabelsError(f"chip {chip_id!r} is of {id_year}, labelled as of {year}")
        if column < 0 or row < 0:
            raise LabelsError(f"chip {chip_id!r} is not on the grid (negative column or row)")
        try:
            w, s, e, n = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise LabelsError(f"chip {chip_id!r}: bounds {bounds!r} are not 4 numbers") from None
        if not (all(math.isfinite(v) for v in (w, s, e, n)) and w < e and s < n):
            raise LabelsError(f"chip {chip_id!r}: bounds {bounds!r} are not a box (west < east, south < north)")
        self.items[chip_id] = {"year": year, "label": label, "bounds": (w, s, e, n)}

    def centres(self, chip_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Longitudes and latitudes (degrees) of the centres of labelled chips."""
        bounds = np.array([self.items[c]["bounds"] for c in chip_ids], dtype=float).reshape(-1, 4)
        return (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2

    def remove(self, chip_id: str) -> None:
        """Forget a chip's label (no error if it had none)."""
        self.items.pop(chip_id, None)

    def _with(self, label: str) -> list[str]:
        return [c for c, v in self.items.items() if v["label"] == label]

    @property
    def positives(self) -> list[str]:
        return self._with("positive")

    @property
    def negatives(self) -> list[str]:
        return self._with("negative")

    def to_geojson(self) -> dict:
        """A GeoJSON FeatureCollection (footprints in lon/lat degrees)."""
        feats = []
        for chip, v in self.items.items():
            w, s, e, n = v["bounds"]
            ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
            props = {"chip_id": chip, "year": v["year"], "label": v["label"]}
            feats.append(
                {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}
            )
        return {"type": "FeatureCollection", "features": feats}

    def save(self, path: str | Path) -> Path:
        """Write the labels as GeoJSON; :class:`LabelsError` for a path that is a folder or in no folder."""
        path = Path(path)
        if path.is_dir():
            raise LabelsError(f"cannot write labels to {path}: it is a folder (name a .geojson file)")
        if not path.parent.is_dir():
            raise LabelsError(f"cannot write labels to {path}: no folder {path.parent}")
        try:  # compact: json's C encoder (an indent would take its pure-Python one, ten times slower)
            path.write_text(json.dumps(self.to_geojson()))
        except OSError as exc:
            raise LabelsError(f"cannot write labels to {path}: {exc.strerror}") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> Labels:
        """Read labels from GeoJSON, with an error that names the problem (and the feature)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LabelsError(f"cannot read labels {path}: {exc}") from None
        except RecursionError:  # JSON nested deeper than Python's stack
            raise LabelsError(f"cannot read labels {path}: nested too deep to be GeoJSON") from None
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
            raise LabelsError(f"{path}: not a GeoJSON FeatureCollection")
        labels = cls()
        features = data.get("features", [])
        if not isinstance(features, list):
            raise LabelsError(f"{path}: 'features' is not a list")
        for i, feat in enumerate(features):
            props = feat.get("properties") if isinstance(feat, dict) else None
            if not isinstance(props, dict):
                raise LabelsError(f"{path}: feature {i} is not a GeoJSON feature with properties")
            missing = [k for k in ("chip_id", "year", "label") if props.get(k) is None]
            if missing:
                raise LabelsError(f"{path}: feature {i} lacks {missing}")
            if not isinstance(props["chip_id"], str) or not isinstance(props["label"], str):
                raise LabelsError(f"{path}: feature {i}: chip_id and label must be strings")
            try:  # plain Python over the ring's few points: numpy per feature costs seconds at 100,000 labels
                ring = feat["geometry"]["coordinates"][0]
                xs, ys = [float(pt[0]) for pt in ring], [float(pt[1]) for pt in ring]
                bounds = (min(xs), min(ys), max(xs), max(ys))
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise LabelsError(f"{path}: feature {i} ({props['chip_id']}) has no polygon geometry") from exc
            if props["label"] not in LABELS:
                raise LabelsError(
                    f"{path}: feature {i} ({props['chip_id']}) has label {props['label']!r}, not one of {LABELS}"
                )
            if props["chip_id"] in labels.items:
                raise LabelsError(f"{path}: feature {i}: chip {props['chip_id']} is labelled twice")
            try:
                labels.add(props["chip_id"], props["label"], year=props["year"], bounds=bounds)
            except LabelsError as exc:
                raise LabelsError(f"{path}: feature {i}: {exc}") from None
        return labels

    def check_against(self, index) -> None:
        """:class:`LabelsError` unless every labelled chip is in ``index`` (a
        :class:`~wcembed.explore.data.index.ChipIndex`) and its footprint is the chip's on the index's grid (to
        1e-6 degree): a label of a chip elsewhere, or of another grid, would mislead every search with it."""
        chips = list(self.items)
        missing = index.missing(chips)
        if missing:
            raise LabelsError(f"{len(missing)} labelled chips are not in the index: {', '.join(missing[:5])}")
        want = _bounds(chips, index.chip_size, index.origin)  # the grid's footprints, all at once
        have = np.array([self.items[c]["bounds"] for c in chips], dtype=float).reshape(-1, 4)
        off = np.abs(have - want).max(axis=1) > 1e-6 if len(chips) else np.zeros(0, bool)
        if off.any():
            i = int(np.argmax(off))
            raise LabelsError(f"chip {chips[i]}: its label's footprint {self.items[chips[i]]['bounds']} is not the "
                              f"chip's {tuple(round(float(v), 6) for v in want[i])}")  # fmt: skip


@dataclass
class TrainedClassifier:
    """A fitted classifier (scaler and logistic regression over unit vectors) with its spatially blocked
    cross-validated score."""

    model: object
    cv_balanced_accuracy: float
    baseline_balanced_accuracy: float
    folds: int
    block_deg: float
    cv_labels: int = 0
    """The labels the cross-validation ran on: all of them, or whole blocks of them up to :data:`CV_MAX_LABELS`."""

    def linear(self) -> tuple[np.ndarray, float]:
        """``(w, b)`` with ``logit = u @ w + b`` for a unit vector ``u``: the scaler folded into the logistic
        regression, so that a whole year is scored by one matrix-vector product
        (:meth:`wcembed.explore.compute.vectors.YearVectors.dot`)."""
        scaler, regression = self.model[0], self.model[-1]
        w = regression.coef_[0] / scaler.scale_
        return w.astype(np.float32), float(regression.intercept_[0] - scaler.mean_ @ w)


def unit(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` divided by their lengths (at least 1e-12), float32."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spatial_blocks(lon: np.ndarray, lat: np.ndarray, block_deg: float) -> np.ndarray:
    """Block id of each chip: a ``block_deg`` x ``block_deg`` degree cell of its centre."""
    bx = np.floor(np.asarray(lon) / block_deg).astype(np.int64)
    by = np.floor(np.asarray(lat) / block_deg).astype(np.int64)
    return bx * 1_000_003 + by


CV_MAX_LABELS = 20_000
"""The most labels the cross-validation scores on: beyond, whole spatial blocks of them drawn at random (the
classifier itself is fitted on every label). Five folds of 100,000 labels cost five fits of 80,000."""


def train(
    index, labels: Labels, *, block_deg: float = 0.05, folds: int = 5, seed: int = 0, vectors=None
) -> TrainedClassifier:
    """Logistic regression on the labelled chips' embeddings, scored with spatially blocked CV.

    The score is balanced accuracy over held-out blocks; the baseline is a
    classifier that guesses by the training folds' class frequencies, scored
    on the same folds. Beyond :data:`CV_MAX_LABELS` labels the CV runs on whole blocks drawn at random up to
    that many (:attr:`TrainedClassifier.cv_labels` says how many). ``vectors(chip_ids)``: the labelled chips'
    vectors ``(N, D)`` when they are at hand (e.g. the explorer's kept unit vectors), else they are looked up
    in the index.
    """
    from sklearn.dummy import DummyClassifier  # deferred: only to train
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ids = list(labels.items)
    if len(labels.positives) < 2 or len(labels.negatives) < 2:
        raise LabelsError("need at least 2 positive and 2 negative labels to train")
    x = unit(index.vectors(ids) if vectors is None else vectors(ids))
    y = np.array([labels.items[c]["label"] == "positive" for c in ids], dtype=int)
    groups = spatial_blocks(*labels.centres(ids), block_deg)
    n_folds = min(folds, len(np.unique(groups)))
    if n_folds < 2:
        raise LabelsError(f"all labels fall in one {block_deg} degree block: cannot cross-validate")
    cv = _cv_rows(groups, CV_MAX_LABELS, seed)

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))

    xs, ys, gs = x[cv], y[cv], groups[cv]
    n_folds = min(n_folds, len(np.unique(gs)))
    pred, base = np.zeros_like(ys), np.zeros_like(ys)
    for train_i, test_i in GroupKFold(n_splits=n_folds).split(xs, ys, gs):
        if len(np.unique(ys[train_i])) < 2:
            pred[test_i] = ys[train_i][0]
        else:
            pred[test_i] = model().fit(xs[train_i], ys[train_i]).predict(xs[test_i])
        base[test_i] = (
            DummyClassifier(strategy="stratified", random_state=seed).fit(xs[train_i], ys[train_i]).predict(xs[test_i])
        )
    fitted = model().fit(x, y)
    return TrainedClassifier(
        fitted, balanced_accuracy_score(ys, pred), balanced_accuracy_score(ys, base), n_folds, block_deg, len(cv)
    )


def _cv_rows(groups: np.ndarray, most: int, seed: int) -> np.ndarray:
    """The rows the cross-validation scores on: all of them, or whole blocks drawn at random until ``most``."""
    if len(groups) <= most:
        return np.arange(len(groups))
    blocks, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(blocks))
    chosen = order[: int(np.searchsorted(np.cumsum(counts[order]), most)) + 1]
    return np.flatnonzero(np.isin(inverse, chosen))


def score_index(index, model, path: str | Path | None = None, *, batch_rows: int = 65_536, year: int | None = None):
    """Probability of the positive class for every chip of the index, batch by batch.

    Returns a GeoDataFrame (``chip_id``, ``year``, ``score``, ``geometry``), written
    as GeoParquet to ``path`` when given, each row with the index's :attr:`~wcembed.explore.data.index.ChipIndex.about`.
    """

    parts = []
    for batch in index.batches(["chip_id", "year", "geometry", "vector"], year=year, batch_rows=batch_rows):
        x = unit(vector_matrix(batch.column("vector")))
        parts.append(
            pd.DataFrame(
                {
                    "chip_id": batch.column("chip_id").to_pandas(),
                    "year": batch.column("year").to_numpy(),
                    "score": model.predict_proba(x)[:, 1].astype(np.float32),
                    "geometry": shapely.from_wkb(batch.column("geometry").to_numpy(zero_copy_only=False)),
                }
            )
        )
    df = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["chip_id", "year", "score", "geometry"])
    )
    gdf = gpd.GeoDataFrame(df, geometry="geometry", crs=CRS)
    if path is not None:
        export(gdf, path, index.about)
    return gdf


def centres(chip_ids, chip_size: int = CHIP_PX, origin: tuple[float, float] = CONUS_ORIGIN) -> np.ndarray:
    """``(N, 2)`` lon/lat centres (degrees) of chips by id, by grid arithmetic."""
    b = _bounds(chip_ids, chip_size, origin)
    return np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2])


def _bounds(chip_ids, chip_size: int, origin: tuple[float, float]) -> np.ndarray:
    """``(N, 4)`` west, south, east, north of chips by id (``{year}-{column}-{row}``), vectorised."""

    parts = pd.Series(list(chip_ids), dtype=object).str.split("-", expand=True)
    if parts.empty:
        return np.zeros((0, 4))
    cells = parts.iloc[:, 1:3].astype(np.int64).to_numpy()
    return np.column_stack(chip_bounds(cells[:, 0], cells[:, 1], chip_size, origin)).reshape(-1, 4)


def with_footprints(frame, chip_size: int = CHIP_PX, origin: tuple[float, float] = CONUS_ORIGIN):
    """A frame with ``chip_id`` (e.g. :attr:`wcembed.explore.state.labelling.LabelLoop.scores`) as a GeoDataFrame
    with each chip's footprint (OGC:CRS84, by grid arithmetic), for :func:`export` and :func:`detections`."""

    boxes = shapely.box(*_bounds(frame["chip_id"], chip_size, origin).T)
    return gpd.GeoDataFrame(frame.drop(columns="geometry", errors="ignore"), geometry=boxes, crs=CRS)


def export(results, path: str | Path, about: Mapping[str, str] | None = None) -> Path:
    """Write search or classifier results (a GeoDataFrame) as GeoParquet (``.parquet``/``.gpq``) or GeoJSON.

    ``about``: properties every row gets, so that the file says what it was made from, e.g. the
    embedding set and weights of the index (:attr:`wcembed.explore.data.index.ChipIndex.about`). A name the
    results already have is refused.
    """
    path = Path(path)
    if about:
        clash = sorted(set(about) & set(results.columns))
        if clash:
            raise BadParameterError(f"the results already have {', '.join(clash)}: not overwritten by about")
        results = results.assign(**about)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".gpq"):
        write_geoparquet(results, path)
    elif path.suffix in (".geojson", ".json"):
        results.to_file(path, driver="GeoJSON")
    else:
        raise BadParameterError(f"export to .parquet, .gpq or .geojson, not {path.suffix!r}")
    return path


def adjacent_groups(years, columns, rows) -> np.ndarray:
    """A group number (0, 1, ...) for each chip given by its year, grid column and row: chips of a year that
    share an edge, directly or through others of the chips given, have the same number (one place)."""
    from scipy import ndimage  # deferred: only to group detections

    years, columns, rows = (np.asarray(v, np.int64) for v in (years, columns, rows))
    groups = np.zeros(len(columns), np.int64)
    found = 0
    for year in np.unique(years):
        at = np.flatnonzero(years == year)
        c, r = columns[at] - columns[at].min(), rows[at] - rows[at].min()
        cells = np.zeros((r.max() + 1, c.max() + 1), bool)  # the chips' bounding box of the grid
        cells[r, c] = True
        labelled, n = ndimage.label(cells)  # neighbours through an edge (ndimage's default structure)
        groups[at] = labelled[r, c] - 1 + found
        found += n
    return groups


def detections(scores, threshold: float = 0.5, chip_size: int = CHIP_PX, origin: tuple[float, float] = CONUS_ORIGIN):
    """Chips scored at least ``threshold``, adjacent chips (sharing an edge, same year) dissolved.

    ``scores`` is a frame with ``chip_id`` and ``score`` (e.g. from :func:`score_index`, or a labelling
    loop's scores, whose footprints come from the grid of ``chip_size`` and ``origin``). Returns a
    GeoDataFrame, one row per group of connected chips: ``year``, ``chips`` (count), ``mean_score``, ``max_score``,
    ``chip_ids`` (comma-separated), the dissolved polygon (OGC:CRS84), largest first.
    Export it with :func:`export` (GeoJSON or GeoParquet).
    """

    keep = scores[scores["score"] >= threshold].reset_index(drop=True)
    if "geometry" not in keep:  # footprints of the kept chips only, by grid arithmetic
        keep = with_footprints(keep, chip_size, origin)
    columns = ["year", "chips", "mean_score", "max_score", "chip_ids"]
    if keep.empty:
        return gpd.GeoDataFrame(columns=[*columns, "geometry"], geometry="geometry", crs=CRS)
    parsed = np.array([parse_chip_id(c) for c in keep["chip_id"]], dtype=np.int64)
    group = adjacent_groups(*parsed.T)
    rows = []
    for g in np.unique(group):
        members = keep[group == g]
        rows.append(
            {
                "year": int(parsed[group == g][0, 0]),
                "chips": len(members),
                "mean_score": float(members["score"].mean()),
                "max_score": float(members["score"].max()),
                "chip_ids": ",".join(sorted(members["chip_id"])),
                "geometry": shapely.union_all(members.geometry.to_numpy(), grid_size=1e-9),
            }
        )
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)
    return out.sort_values(["chips", "mean_score"], ascending=False, ignore_index=True)


def suggest_next(index, scores, labels: Labels, n: int = 10, *, pool: int = 20, vectors=None):
    """``n`` unlabelled chips whose labels would help the classifier most, as a GeoDataFrame.

    Candidates are the ``n * pool`` unlabelled chips scored closest to 0.5 (the
    classifier is least sure of them). From those, chips are picked one at a time,
    each the candidate farthest from the chips already picked (and from the
    labelled ones), weighted by its uncertainty (1 at a score of 0.5, 0 at 0 or 1).
    Distance is cosine distance of the embeddings plus distance between the
    centres in degrees, each divided by its median over the candidates, so that
    the suggestions are neither near-duplicates nor neighbours. ``scores`` is
    :func:`score_index`'s output; the result keeps its columns and adds
    ``uncertainty`` and ``pick`` (order of choice). ``vectors(chip_ids)``: the chips' vectors when they are at
    hand (as :func:`train` takes them), else they are looked up in the index.
    """
    lookup = index.vectors if vectors is None else vectors
    if n < 1:
        raise BadParameterError(f"n must be at least 1, got {n}")
    free = scores[~scores["chip_id"].isin(list(labels.items))]
    uncertainty = 1 - 2 * (free["score"] - 0.5).abs()
    cand = free.assign(uncertainty=uncertainty.to_numpy()).nlargest(n * pool, "uncertainty").reset_index(drop=True)
    if cand.empty:
        return cand.assign(pick=[])
    x = unit(lookup(list(cand["chip_id"])))
    xy = centres(cand["chip_id"], index.chip_size, index.origin)
    anchors = list(labels.items)
    ax = unit(lookup(anchors)) if anchors else np.zeros((0, x.shape[1]), np.float32)
    axy = np.column_stack(labels.centres(anchors)) if anchors else np.zeros((0, 2))
    sample = np.random.default_rng(0).choice(len(cand), min(len(cand), 200), replace=False)
    emb_scale = float(np.median(1 - x[sample] @ x[sample].T)) or 1.0
    geo_scale = float(np.median(np.linalg.norm(xy[sample, None] - xy[None, sample], axis=2))) or 1.0

    def distance_to(vecs: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Each candidate's combined distance to the nearest of the given chips (inf when none)."""
        if not len(vecs):
            return np.full(len(cand), np.inf)
        apart = np.hypot(xy[:, None, 0] - pts[None, :, 0], xy[:, None, 1] - pts[None, :, 1])
        d = (1 - x @ vecs.T) / emb_scale + apart / geo_scale
        return d.min(axis=1)

    nearest = distance_to(ax, axy)
    picked: list[int] = []
    weight = cand["uncertainty"].to_numpy()
    for _ in range(min(n, len(cand))):
        gain = weight * np.where(np.isinf(nearest), 1.0, nearest)
        gain[picked] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        nearest = np.minimum(nearest, distance_to(x[[best]], xy[[best]]))
    return cand.iloc[picked].assign(pick=np.arange(1, len(picked) + 1)).reset_index(drop=True)
