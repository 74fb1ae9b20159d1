"""What one column job is: its parameters, defined once.

:class:`ColumnJob` is the single definition of the parameters of embedding a
(year, column), or a band of adjacent columns (``band``; one file per column).
Each field carries its default, the environment variable an AWS Batch job
passes it in, and its help text; from it come

* the ``python -m wcembed embed`` flags (and those of ``run-array``, ``submit``,
  ``resubmit-missing``) with :meth:`ColumnJob.add_arguments`;
* a Batch job's environment, both ways (:meth:`ColumnJob.to_env`, :meth:`ColumnJob.from_env`),
  which the local array runner and the demo use too;
* the papermill parameters of ``notebooks/embed_column.ipynb``
  (:meth:`ColumnJob.parameters`), whose ``parameters`` cell a test holds to these
  names and defaults.

This module imports nothing heavy, so that submitting jobs needs no torch.

Examples
--------
>>> job = ColumnJob(year=2020, column=12, output="s3://bucket/embeddings", batch_size=16)
>>> job.to_env()["BATCH_SIZE"]
'16'
>>> ColumnJob.from_env({"YEAR": "2020", "OUTPUT": "s3://bucket/embeddings", "BATCH_SIZE": "16"}, column=12) == job
True
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wcembed.core.errors import BadParameterError
from wcembed.core.product import ESA_HTTPS, check_year
from wcembed.pipeline.models import get_model

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_CASTS = {"int": int, "float": float, "str": str, "bool": bool}
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")


def _param(default: Any = dataclasses.MISSING, *, env: str | None, help: str, example: Any = None) -> Any:
    """A job parameter: its default, environment variable, help text and (for required ones) an example."""
    return field(default=default, metadata={"env": env, "help": help, "example": example})


def parse_flag(value: str, name: str = "flag") -> bool:
    """An environment flag: ``1``/``true``/``yes`` or ``0``/``false``/``no``/empty (any case)."""
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise BadParameterError(f"{name}={value!r} is not a flag: use true or false")


DEVICE_RE = re.compile(r"cpu|mps|cuda(:\d+)?")
"""The devices a job may name (whether this machine has them is checked when the model loads)."""
LIMITS = {"band": (1, 1024), "batch_size": (1, 4096), "workers": (1, 256), "max_rows": (0, 2**31 - 1)}
"""The ranges of a job's whole-number parameters (a band wider than CONUS, 1,383 columns, is cut to the grid
anyway; 1,024 is a bound that still catches a mistyped number)."""


@dataclass(frozen=True)
class ColumnJob:
    """The parameters of embedding one (year, column).

    ``column`` is None in a job *template* (what ``submit`` sends to AWS Batch),
    where each array index picks its column from the grid.
    """

    year: int = _param(env="YEAR", help="WorldCover composite year: 2020 or 2021", example=2020)
    column: int | None = _param(
        None, env=None, help="grid column number (see plan_grid.ipynb); in Batch, from the array index", example=12
    )
    band: int = _param(
        1,
        env="BAND",
        help="adjacent grid columns per job, from column: each COG block is read once for all of them",
    )
    output: str = _param("outputs/embeddings", env="OUTPUT", help="local folder or s3://bucket/prefix")
    tiles: str = _param(ESA_HTTPS, env="TILES", help="tile source: bucket URL, s3:// prefix or local mirror")
    tile_index: str | None = _param(
        None, env="TILE_INDEX", help="which tiles exist: None (from the tile source), land, a .fgb path/URL, a folder"
    )
    region: str = _param("CONUS", env="REGION", help="region the grid is planned over: CONUS or w,s,e,n degrees")
    model: str = _param("clay-v0", env="MODEL", help="the model: clay-v0 (the original scripts') or clay-v1.5")
    recipe: str | None = _param(
        None, env="RECIPE", help="how a chip becomes one vector: None, the model's own; clay-v1.5: quarters or whole"
    )
    checkpoint: str | None = _param(None, env="CHECKPOINT", help="the model's checkpoint: path, https or s3 URL")
    batch_size: int = _param(8, env="BATCH_SIZE", help="chips per forward pass")
    device: str | None = _param(None, env="DEVICE", help="cuda, mps or cpu; None picks CUDA, then MPS, then CPU")
    precision: str = _param(
        "auto",
        env="PRECISION",
        help="auto (bf16 where the device has it and it agrees with float32), float32, bfloat16 or float16",
    )
    min_valid_fraction: float = _param(
        0.5, env="MIN_VALID_FRACTION", help="skip chips with a smaller share of valid pixels (0..1)"
    )
    allow_untrained: bool = _param(
        False, env="ALLOW_UNTRAINED", help="run random weights when no checkpoint is given (recorded as untrained)"
    )
    overwrite: bool = _param(False, env="OVERWRITE", help="redo a column whose file exists")
    max_rows: int | None = _param(
        None,
        env="MAX_ROWS",
        help="embed only the first N chips of the column (the file is marked partial: never taken as done)",
    )
    workers: int | None = _param(
        None, env="WORKERS", help="chip reader threads; None: one per core on a GPU, one on a CPU"
    )

    def __post_init__(self) -> None:
        check_year(self.year)
        if not 0 <= self.min_valid_fraction <= 1:
            raise BadParameterError(f"min_valid_fraction must be within 0..1, got {self.min_valid_fraction}")
        for name, (lo, hi) in LIMITS.items():
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                raise BadParameterError(f"{name} must be within {lo}..{hi}, got {value}")
        get_model(self.model).check_recipe(self.recipe)
        if self.precision not in PRECISIONS:
            raise BadParameterError(f"unknown precision {self.precision!r}: one of {PRECISIONS}")
        if self.column is not None and self.column < 0:
            raise BadParameterError(f"column {self.column}: grid columns count from 0 at lon -125")
        if self.device not in (None, "auto") and not DEVICE_RE.fullmatch(str(self.device)):
            raise BadParameterError(f"unknown device {self.device!r}: cuda, cuda:N, mps or cpu")
        if "://" not in str(self.output) and Path(self.output).exists() and not Path(self.output).is_dir():
            raise BadParameterError(f"output {self.output} is a file: give a folder (or s3://bucket/prefix)")
        if "://" not in str(self.tiles) and not Path(self.tiles).is_dir():
            raise BadParameterError(
                f"tiles {self.tiles}: no such tile source folder (give a mirror, https or s3:// URL)"
            )

    # ------------------------------------------------------------------ the definition
    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        """The parameters, in order."""
        return list(dataclasses.fields(cls))

    @staticmethod
    def kind(f: dataclasses.Field) -> type:
        """The parameter's value type (``int``, ``float``, ``str`` or ``bool``; None allowed where the default is)."""
        return _CASTS[str(f.type).split("|")[0].strip()]

    @staticmethod
    def example(f: dataclasses.Field) -> Any:
        """The value the notebook's parameters cell shows: the example of a required one, else the default."""
        return f.metadata["example"] if f.metadata["example"] is not None else f.default

    # ------------------------------------------------------------------ from and to
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> ColumnJob:
        """A job from the entries of ``values`` named like parameters (others ignored), e.g. a
        notebook's ``globals()`` after papermill injected its parameters."""
        names = {f.name for f in cls.fields()}
        return cls(**{k: v for k, v in values.items() if k in names} | overrides)

    @classmethod
    def add_arguments(
        cls,
        parser: argparse.ArgumentParser,
        *,
        only: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        required: Iterable[str] = (),
    ) -> None:
        """Add ``--name`` flags for the parameters (``only`` some, or all but ``exclude``)."""
        keep, skip, must = (set(only) if only is not None else None), set(exclude), set(required)
        for f in cls.fields():
            if (keep is not None and f.name not in keep) or f.name in skip:
                continue
            flag = "--" + f.name.replace("_", "-")
            if cls.kind(f) is bool:
                parser.add_argument(flag, action="store_true", help=f.metadata["help"])
                continue
            needed = f.default is dataclasses.MISSING or f.name in must
            default = None if needed else f.default
            parser.add_argument(flag, type=cls.kind(f), default=default, required=needed, help=f.metadata["help"])

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> ColumnJob:
        """A job from parsed flags (see :meth:`add_arguments`)."""
        return cls.from_mapping(vars(args), **overrides)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> ColumnJob:
        """A job from an AWS Batch job's environment (``YEAR``, ``OUTPUT``, ``TILES``, ...)."""
        values: dict[str, Any] = {}
        for f in cls.fields():
            raw = env.get(f.metadata["env"] or "")
            if raw is None or (raw == "" and cls.kind(f) is not bool):
                continue
            try:
                values[f.name] = parse_flag(raw, f.metadata["env"]) if cls.kind(f) is bool else cls.kind(f)(raw)
            except ValueError:
                raise BadParameterError(f"{f.metadata['env']}={raw!r} is not a {cls.kind(f).__name__}") from None
        if "year" not in values and "year" not in overrides:
            raise BadParameterError("the job's environment has no YEAR")
        return cls(**values | overrides)

    def to_env(self) -> dict[str, str]:
        """The environment of a Batch job running this job (parameters that are None are left out)."""
        env = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if f.metadata["env"] and value is not None:
                env[f.metadata["env"]] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def changed_env(self) -> dict[str, str]:
        """The entries of :meth:`to_env` whose values differ from the defaults' (and the year): what a
        submission sends, so that the job definition's environment (e.g. the GPU variant's ``BATCH_SIZE``
        and ``BAND``) holds for everything else."""
        defaults = dataclasses.replace(self, **{f.name: f.default for f in self.fields() if f.name != "year"})
        base = defaults.to_env()
        return {k: v for k, v in self.to_env().items() if base.get(k) != v or k == "YEAR"}

    def parameters(self) -> dict[str, Any]:
        """The papermill parameters of ``embed_column.ipynb``."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ what it touches
    def plan_grid(self):
        """The grid this job's column belongs to (:func:`wcembed.core.tileset.plan_grid`)."""
        # deferred: the tile set loads geopandas and GDAL, and the command line checks a job before it plans
        from wcembed.core.tileset import plan_grid

        return plan_grid(self.year, self.tiles, tile_index=self.tile_index, region=self.region)

    def columns(self, grid) -> list[int]:
        """The grid columns this job embeds: those among ``column .. column + band - 1``
        (:meth:`wcembed.core.grid.Grid.band`)."""
        if self.column is None:
            raise BadParameterError("a job template has no column, hence no output file")
        return grid.band(self.column, self.band)

    def output_path(self, column: int) -> str:
        """Where the GeoParquet file of one of the job's columns goes."""
        from wcembed.core.store import output_path  # deferred: the store loads geopandas (see plan_grid)

        return output_path(self.output, self.year, column)
