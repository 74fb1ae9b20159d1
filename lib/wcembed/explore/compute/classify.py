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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from wcembed.core.contract import write_geoparquet
from wcembed.core.errors import BadInputError, BadParameterError, LabelsError
from wcembed.core.grid import CHIP_PX, CONUS_ORIGIN, chip_bounds, parse_chip_id, parse_chip_ids
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
            id_year = parse_chip_id(chip_id)[0]
            year = check_year(year)
        except BadInputError as exc:
            raise LabelsError(str(exc)) from None
        if id_year != year:
            raise LabelsError(f"chip {chip_id!r} is of {id_year}, labelled as of {year}")
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
        """Read labels from GeoJSON, with an error that names the problem (and the feature).

        A well-formed file is read in one pass by GDAL's GeoJSON reader and checked column by column (100,000
        labels in about 2 s on a 2-core machine, where Python's JSON parser alone took 3-4 s); any other is
        read feature by feature, which names the first problem."""
        labels = _read_columns(Path(path))
        return labels if labels is not None else cls._read_features(path)

    @classmethod
    def _read_features(cls, path: str | Path) -> Labels:
        """Labels read feature by feature with Python's JSON parser, or :class:`LabelsError` naming the problem."""
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


_FEATURE_COLLECTION = re.compile(rb'\s*\{\s*"type"\s*:\s*"FeatureCollection"\s*,')


def _read_columns(path: Path) -> Labels | None:
    """The labels of a file as :meth:`Labels.save` writes it (a FeatureCollection whose features all have a
    string ``chip_id``, an integer ``year``, a ``label`` and a polygon), read by GDAL in one pass and checked as
    :meth:`Labels.add` checks one label; ``None`` where anything differs, for :meth:`Labels._read_features` to
    read and name."""
    import pyarrow as pa  # deferred: with GDAL, only to read labels
    import pyarrow.compute as pc
    import pyogrio

    try:
        with path.open("rb") as f:
            if not _FEATURE_COLLECTION.match(f.read(256)):
                return None
        meta, table = pyogrio.read_arrow(path, columns=["chip_id", "year", "label"])
    except (OSError, RuntimeError):  # pyogrio's errors are RuntimeErrors: the feature-by-feature reader says why
        return None
    if meta.get("geometry_name", "") or "wkb_geometry" not in table.column_names:
        return None
    names = dict(zip(table.column_names, table.schema.types, strict=True))
    if not (
        names.get("chip_id") == pa.string()
        and names.get("label") == pa.string()
        and pa.types.is_integer(names.get("year", pa.null()))
        and not any(table[c].null_count for c in table.column_names)
        and pc.all(pc.is_in(table["label"], value_set=pa.array(LABELS))).as_py() is not False
        and pc.count_distinct(table["chip_id"]).as_py() == len(table)
    ):
        return None
    geometry = shapely.from_wkb(table["wkb_geometry"].to_numpy(zero_copy_only=False))
    if len(geometry) and not (shapely.get_type_id(geometry) == shapely.GeometryType.POLYGON).all():
        return None
    try:
        cells = parse_chip_ids(table["chip_id"])
        years = table["year"].to_numpy()
        for year in np.unique(years):
            check_year(int(year))
    except BadInputError:
        return None
    bounds = shapely.bounds(geometry).reshape(-1, 4)
    w, s, e, n = bounds.T
    if not ((cells[:, 0] == years).all() and np.isfinite(bounds).all() and (w < e).all() and (s < n).all()):
        return None
    labels = Labels()
    labels.items = {
        chip: {"year": year, "label": label, "bounds": box}
        for chip, year, label, box in zip(
            table["chip_id"].to_pylist(),
            years.tolist(),
            table["label"].to_pylist(),
            map(tuple, bounds.tolist()),
            strict=True,
        )
    }
    return labels


@dataclass
class TrainedClassifier:
    """A fitted classifier over unit vectors (each component standardised by the training labels' ``mean`` and
    ``scale``, then a logistic ``regression``) with its spatially blocked cross-validated score."""

    mean: np.ndarray
    scale: np.ndarray
    regression: object
    cv_balanced_accuracy: float
    baseline_balanced_accuracy: float
    folds: int
    block_deg: float
    cv_labels: int = 0
    """The labels the cross-validation ran on: all of them, or whole blocks of them up to :data:`CV_MAX_LABELS`."""

    def predict_proba(self, u: np.ndarray) -> np.ndarray:
        """``(N, 2)`` probabilities of the negative and the positive class of unit vectors ``u`` ``(N, D)``."""
        return self.regression.predict_proba(_standardise(u, self.mean, self.scale))

    def linear(self) -> tuple[np.ndarray, float]:
        """``(w, b)`` with ``logit = u @ w + b`` for a unit vector ``u``: the standardisation folded into the
        logistic regression, so that a whole year is scored by one matrix-vector product
        (:meth:`wcembed.explore.compute.vectors.YearVectors.dot`)."""
        w = self.regression.coef_[0] / self.scale
        return w.astype(np.float32), float(self.regression.intercept_[0] - self.mean @ w)


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(x - mean) / scale`` in float32 (a float64 copy of 100,000 labels' vectors would be 600 MB)."""
    z = np.subtract(x, mean.astype(np.float32), dtype=np.float32)
    z *= (1 / scale).astype(np.float32)
    return z


def _moments(x: np.ndarray, rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``x`` ``(N, D)``, float64: float32 sums over ``rows`` rows at
    a time added up in float64 (a float64 pass over all of ``x``, as numpy's ``std(dtype=float64)`` or
    scikit-learn's scaler make, took seconds at 100,000 labels)."""
    total = np.zeros(x.shape[1])
    for s in range(0, len(x), rows):
        total += x[s : s + rows].sum(axis=0)
    mean = total / max(len(x), 1)
    squares, centre = np.zeros(x.shape[1]), mean.astype(x.dtype)
    for s in range(0, len(x), rows):
        d = x[s : s + rows] - centre
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / max(len(x), 1))


def _fit(x: np.ndarray, y: np.ndarray):
    """``(mean, scale, regression)`` fitted on unit vectors ``x`` and classes ``y``: per-component mean and
    standard deviation (a constant component is left unscaled), then a class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression  # deferred: only to train

    mean, scale = _moments(x)
    scale[scale < 10 * np.finfo(np.float64).eps] = 1.0
    regression = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
    return mean, scale, regression.fit(_standardise(x, mean, scale), y)


def unit(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` divided by their lengths (at least 1e-12), float32."""
    out = np.array(x, np.float32)  # one new array, divided in place (each new 300 MB costs its page faults)
    out /= np.maximum(np.sqrt(np.einsum("ij,ij->i", out, out)), 1e-12)[:, None]
    return out


def labelled(chip_ids, labels: Labels) -> np.ndarray:
    """Whether each of ``chip_ids`` (a sequence or Series of chip ids) is labelled: one hash lookup in Arrow
    (pandas' ``isin`` over Arrow strings loops in Python: seconds at 100,000 labels)."""
    import pyarrow as pa  # deferred: with the labels' own lookups
    import pyarrow.compute as pc

    ids = pa.array(list(chip_ids) if not isinstance(chip_ids, pd.Series) else chip_ids, pa.string())
    return pc.is_in(ids, value_set=pa.array(list(labels.items), pa.string())).to_numpy(zero_copy_only=False)


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
    unit vectors ``(N, D)`` when they are at hand (e.g. the explorer's kept vectors), else the index's vectors
    are looked up and made unit vectors.
    """
    from sklearn.dummy import DummyClassifier  # deferred: only to train
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold

    ids = list(labels.items)
    if len(labels.positives) < 2 or len(labels.negatives) < 2:
        raise LabelsError("need at least 2 positive and 2 negative labels to train")
    x = unit(index.vectors(ids)) if vectors is None else vectors(ids)
    y = np.array([labels.items[c]["label"] == "positive" for c in ids], dtype=int)
    groups = spatial_blocks(*labels.centres(ids), block_deg)
    n_folds = min(folds, len(np.unique(groups)))
    if n_folds < 2:
        raise LabelsError(f"all labels fall in one {block_deg} degree block: cannot cross-validate")
    cv = _cv_rows(groups, CV_MAX_LABELS, seed)
    xs, ys, gs = x[cv], y[cv], groups[cv]
    n_folds = min(n_folds, len(np.unique(gs)))
    pred, base = np.zeros_like(ys), np.zeros_like(ys)
    for train_i, test_i in GroupKFold(n_splits=n_folds).split(xs, ys, gs):
        if len(np.unique(ys[train_i])) < 2:
            pred[test_i] = ys[train_i][0]
        else:
            mean, scale, regression = _fit(xs[train_i], ys[train_i])
            pred[test_i] = regression.predict(_standardise(xs[test_i], mean, scale))
        base[test_i] = (
            DummyClassifier(strategy="stratified", random_state=seed).fit(xs[train_i], ys[train_i]).predict(xs[test_i])
        )
    return TrainedClassifier(
        *_fit(x, y), balanced_accuracy_score(ys, pred), balanced_accuracy_score(ys, base), n_folds, block_deg, len(cv)
    )


def _cv_rows(groups: np.ndarray, most: int, seed: int) -> np.ndarray:
    """The rows the cross-validation scores on: all of them, or whole blocks drawn at random until ``most``."""
    if len(groups) <= most:
        return np.arange(len(groups))
    blocks, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(blocks))
    chosen = order[: int(np.searchsorted(np.cumsum(counts[order]), most)) + 1]
    return np.flatnonzero(np.isin(inverse, chosen))


def score_index(
    index,
    classifier: TrainedClassifier,
    path: str | Path | None = None,
    *,
    batch_rows: int = 65_536,
    year: int | None = None,
):
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
                    "score": classifier.predict_proba(x)[:, 1].astype(np.float32),
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

    cells = parse_chip_ids(chip_ids)
    return np.column_stack(chip_bounds(cells[:, 1], cells[:, 2], chip_size, origin)).reshape(-1, 4)


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
    parsed = parse_chip_ids(keep["chip_id"])
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
    ``uncertainty`` and ``pick`` (order of choice). ``vectors(chip_ids)``: the chips' unit vectors when they are
    at hand (as :func:`train` takes them), else the index's are looked up.
    """

    def lookup(chip_ids: list[str]) -> np.ndarray:
        return unit(index.vectors(chip_ids)) if vectors is None else vectors(chip_ids)

    if n < 1:
        raise BadParameterError(f"n must be at least 1, got {n}")
    free = scores[~labelled(scores["chip_id"], labels)]
    uncertainty = 1 - 2 * (free["score"] - 0.5).abs()
    cand = free.assign(uncertainty=uncertainty.to_numpy()).nlargest(n * pool, "uncertainty").reset_index(drop=True)
    if cand.empty:
        return cand.assign(pick=[])
    x = lookup(list(cand["chip_id"]))
    xy = centres(cand["chip_id"], index.chip_size, index.origin).astype(np.float32)
    anchors = list(labels.items)
    ax = lookup(anchors) if anchors else np.zeros((0, x.shape[1]), np.float32)
    axy = np.column_stack(labels.centres(anchors)).astype(np.float32) if anchors else np.zeros((0, 2), np.float32)
    sample = np.random.default_rng(0).choice(len(cand), min(len(cand), 200), replace=False)
    emb_scale = float(np.median(1 - x[sample] @ x[sample].T)) or 1.0
    geo_scale = float(np.median(np.linalg.norm(xy[sample, None] - xy[None, sample], axis=2))) or 1.0

    def distance_to(vecs: np.ndarray, pts: np.ndarray, rows: int = 4096) -> np.ndarray:
        """Each candidate's combined distance to the nearest of the given chips (inf when none), ``rows`` of
        them at a time (the candidates by 100,000 labels at once are 16 million distances)."""
        nearest = np.full(len(cand), np.inf)
        for s in range(0, len(vecs), rows):
            v, p = vecs[s : s + rows], pts[s : s + rows]
            apart = np.hypot(xy[:, None, 0] - p[None, :, 0], xy[:, None, 1] - p[None, :, 1])
            d = (1 - x @ v.T) / emb_scale + apart / geo_scale
            nearest = np.minimum(nearest, d.min(axis=1))
        return nearest

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
