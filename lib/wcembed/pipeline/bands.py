"""A band of adjacent columns, read block row by block row straight into batch buffers.

Why bands
---------
ESA's COGs have 1024 px blocks. Chip columns are 512 px wide and sit at another
offset in every tile column (12000 mod 512 = 224 px), so a 1024 px block column
is touched by three chip columns on average: a job that reads one column
fetches and decodes about three times the blocks under its chips. A job that
reads a band of ``B`` adjacent columns together fetches each of its blocks
once; over the whole grid the bands fetch about ``1 + 2/B`` times the blocks
(the block columns cut by a band's two edges are read by both neighbours).

How
---
:class:`BandPlan` is arithmetic alone:

* the chips of each column are cut into batches on absolute row numbers (batch
  ``g`` of a column holds its rows ``g*batch_size .. (g+1)*batch_size - 1``), so a
  band job and one-column jobs run the same batches, hence write the same
  embeddings bit for bit; batch ``g`` of every column of the band is *group* ``g``;
* under the chips lie *strips*: a tile's 1024 px block row cut to the band's chips,
  in pieces of at most ``strip_blocks`` blocks (2: a thread's strip then stays in
  its CPU caches, and the work spreads over more threads; 2 to 5 % faster per
  thread and 1.2x on 2 threads than whole block rows, ``bench_tiles.py``), each
  with the places its pixels go in the chips.

:class:`BandFeed` runs the plan: reader threads, each with its own open datasets,
read every strip once and copy its pixels straight into the chips' slots of
preallocated batch buffers (pinned memory for a CUDA device). The buffers form a
ring of ``depth`` groups: while the consumer embeds one group, the next ones
fill. Groups come out in order; a chip's valid-pixel count comes with it.

:func:`read_chips` reads a few chips anywhere (a result to explain, a test's
chips) as a plan of those chips alone: one reading path for every chip.

Examples
--------
>>> from wcembed.core.grid import Grid
>>> grid = Grid(["N37W076"])
>>> plan = BandPlan(grid, {c: list(grid.rows(c)) for c in grid.band(1152, 4)}, batch_size=8)
>>> len(plan.columns), len(plan.groups)
(4, 4)
>>> with BandFeed(plan, 2020, "outputs/sample") as feed:  # doctest: +SKIP
...     for group in feed:
...         group.pixels.shape  # (columns, batch_size, 4, 512, 512) uint16
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from wcembed.core.grid import Grid
from wcembed.core.product import BLOCK_PX, NODATA, TILE_PX, Tile
from wcembed.pipeline.tiles import TileReader


def _count_valid(part: np.ndarray) -> int:
    """Pixels of ``(4, h, w)`` uint16 ``part`` with data: those whose bands OR to non-zero (nodata is 0 in
    every band), OR-ed in place (a third of the time of comparing each band)."""
    acc = np.bitwise_or(part[0], part[1])
    for band in part[2:]:
        np.bitwise_or(acc, band, out=acc)
    return int(np.count_nonzero(acc))


@dataclass(frozen=True)
class Placement:
    """Where a part of a strip goes: ``chip[:, y0:y1, x0:x1] = strip[:, sy0:sy1, tx0 - strip.x0 : tx1 - strip.x0]``.

    ``src`` is ``(sy0, sy1, tx0, tx1)``: rows in the strip, columns in tile pixels;
    ``dst`` is ``(y0, y1, x0, x1)`` in the chip; the chip is slot ``slot`` of
    column ``col`` (its position in the band) in group ``group``.
    """

    group: int
    col: int
    slot: int
    src: tuple[int, int, int, int]
    dst: tuple[int, int, int, int]


@dataclass
class Strip:
    """Part of one block row of one tile: the x-range ``x0 .. x1`` (tile pixels) of the band's chips on it,
    within ``strip_blocks`` blocks."""

    tile: str
    block_row: int
    x0: int
    x1: int
    placements: list[Placement] = field(default_factory=list)

    @property
    def window(self) -> Window:
        """The window read from the tile (tile pixel space)."""
        y0 = self.block_row * BLOCK_PX
        return Window(self.x0, y0, self.x1 - self.x0, min(BLOCK_PX, TILE_PX - y0))

    @property
    def first_group(self) -> int:
        return min(p.group for p in self.placements)

    @property
    def last_group(self) -> int:
        return max(p.group for p in self.placements)


class BandPlan:
    """The batches and block strips of a band job: which chips, in which slots, from which pixels.

    Parameters
    ----------
    grid : Grid
    rows : mapping of column to row numbers
        The chips to read, by column, west to east (rows sorted north to south).
    batch_size : int
        Chips per batch of one column; batches are cut on absolute row numbers.
    strip_blocks : int
        The most 1024 px blocks one strip (one read, one reader task) spans.

    Attributes
    ----------
    columns : list of int
        The band's columns, west to east (their positions are the ``col`` of a placement).
    groups : list of list of list of int
        ``groups[g][col]``: the rows of column ``col`` in batch group ``g`` (north to south).
    blank : list of list of (col, slot, dst)
        Per group, the parts of chips on tiles that do not exist (nodata: zeros).
    strips : list of Strip
        Every block strip under the chips, each once, in the order they are needed.
    """

    def __init__(self, grid: Grid, rows: Mapping[int, Sequence[int]], batch_size: int, strip_blocks: int = 2) -> None:
        self.grid = grid
        self.strip_blocks = strip_blocks
        self.batch_size = int(batch_size)
        self.columns = [int(c) for c in rows]
        keys = sorted({int(r) // self.batch_size for rs in rows.values() for r in rs})
        at = {k: g for g, k in enumerate(keys)}
        self.groups: list[list[list[int]]] = [[[] for _ in self.columns] for _ in keys]
        for col, c in enumerate(self.columns):
            for r in sorted(int(r) for r in rows[c]):
                self.groups[at[r // self.batch_size]][col].append(r)
        self.blank: list[list[tuple[int, int, tuple[int, int, int, int]]]] = [[] for _ in keys]
        strips: dict[tuple[str, int, int], Strip] = {}
        for g, cols in enumerate(self.groups):
            for col, group_rows in enumerate(cols):
                for slot, r in enumerate(group_rows):
                    for piece in grid.chip_pieces(self.columns[col], r):
                        self._place(piece, g, col, slot, strips)
        self.strips = sorted(
            strips.values(),
            key=lambda s: (s.last_group, s.first_group, Tile.from_name(s.tile).index, s.block_row),
        )

    def _place(self, piece, g: int, col: int, slot: int, strips: dict[tuple[str, int, int], Strip]) -> None:
        w, cw = piece.window, piece.chip_window
        if not piece.exists:
            self.blank[g].append((col, slot, (cw.row_off, cw.row_off + cw.height, cw.col_off, cw.col_off + cw.width)))
            return
        step = self.strip_blocks * BLOCK_PX
        for k in range(w.row_off // BLOCK_PX, (w.row_off + w.height - 1) // BLOCK_PX + 1):
            y0, y1 = max(w.row_off, k * BLOCK_PX), min(w.row_off + w.height, (k + 1) * BLOCK_PX)
            dy = cw.row_off + y0 - w.row_off
            for part in range(w.col_off // step, (w.col_off + w.width - 1) // step + 1):
                tx0, tx1 = max(w.col_off, part * step), min(w.col_off + w.width, (part + 1) * step)
                strip = strips.setdefault((piece.tile, k, part), Strip(piece.tile, k, tx0, tx1))
                strip.x0, strip.x1 = min(strip.x0, tx0), max(strip.x1, tx1)
                dx = cw.col_off + tx0 - w.col_off
                strip.placements.append(
                    Placement(
                        g,
                        col,
                        slot,
                        (y0 - k * BLOCK_PX, y1 - k * BLOCK_PX, tx0, tx1),
                        (dy, dy + y1 - y0, dx, dx + tx1 - tx0),
                    )
                )

    @property
    def span(self) -> int:
        """The most batch groups one strip feeds (a ring of buffers needs at least this many)."""
        return max((s.last_group - s.first_group + 1 for s in self.strips), default=1)

    @property
    def n_chips(self) -> int:
        """Chips in the plan."""
        return sum(len(rows) for cols in self.groups for rows in cols)


@dataclass
class Group:
    """One batch group, as :class:`BandFeed` hands it out.

    ``pixels[col, slot]`` is the ``(4, H, W)`` uint16 chip of row ``rows[col][slot]``
    (B04, B03, B02, B08; 0 = nodata) and ``valid[col, slot]`` its count of pixels
    with data. Both are views of a ring buffer: valid until the next group is asked for.
    """

    index: int
    rows: list[list[int]]
    pixels: torch.Tensor
    valid: np.ndarray


class BandFeed:
    """Reads a :class:`BandPlan`'s strips in background threads into a ring of batch buffers.

    Parameters
    ----------
    plan : BandPlan
    year : int
    source : str
        Tile source (local folder, ``http(s)://`` or ``s3://``; see :mod:`wcembed.pipeline.tiles`).
    workers : int
        Reader threads; each keeps its own open datasets.
    depth : int
        Batch groups in the ring (at least 2, and at least :attr:`BandPlan.span`):
        the group being embedded and those filling behind it.
    pin : bool
        Allocate the buffers in pinned (page-locked) memory, for asynchronous copies to a CUDA device.
    retries, backoff : int, float
        Each reader's retries of a transient error and its first backoff in seconds (:class:`TileReader`).

    Notes
    -----
    Iterate it (once) for the groups in order; errors of the readers (e.g.
    :class:`~wcembed.core.errors.TileMissingError`) are raised there.
    """

    def __init__(
        self,
        plan: BandPlan,
        year: int,
        source: str,
        *,
        workers: int = 1,
        depth: int = 2,
        pin: bool = False,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.plan, self.year, self.source = plan, year, str(source)
        self._retry = {"retries": retries, "backoff": backoff}
        n_groups = len(plan.groups)
        self.depth = max(1, min(max(depth, 2, plan.span), n_groups))
        cs = plan.grid.chip_size
        shape = (len(plan.columns), plan.batch_size, 4, cs, cs)
        self.buffers = [torch.zeros(shape, dtype=torch.uint16, pin_memory=pin) for _ in range(self.depth)]
        self._arrays = [b.numpy() for b in self.buffers]  # the same memory, for the reader threads
        self._valid = [np.zeros(shape[:2], np.int64) for _ in range(self.depth)]
        self._local = threading.local()
        self._readers: list[TileReader] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="band-reader")

    def __enter__(self) -> BandFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the readers (work not started is dropped) and close their datasets."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for reader in self._readers:
            reader.close()
        self._readers.clear()

    def _reader(self) -> TileReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = TileReader(self.year, self.source, **self._retry)
            with self._lock:
                self._readers.append(reader)
        return reader

    def _read(self, strip: Strip) -> list[int]:
        """Read one strip and place its pixels; return the valid-pixel count of each placement."""
        window = strip.window
        shape = (4, window.height, window.width)
        scratch = self._local.__dict__.setdefault("scratch", {})  # one strip buffer per shape and thread, reused
        data = scratch.get(shape)
        if data is None:
            data = scratch[shape] = np.empty(shape, np.uint16)
        reader = self._reader()
        with rasterio.Env(**reader.options):
            reader.read_window(strip.tile, window, out=data)
        counts = []
        for p in strip.placements:
            sy0, sy1, tx0, tx1 = p.src
            y0, y1, x0, x1 = p.dst
            part = data[:, sy0:sy1, tx0 - strip.x0 : tx1 - strip.x0]
            self._arrays[p.group % self.depth][p.col, p.slot, :, y0:y1, x0:x1] = part
            counts.append(_count_valid(part))
        return counts

    def _prepare(self, g: int) -> None:
        """Make ring slot of group ``g`` ready: counts zeroed, parts on missing tiles set to nodata."""
        arr, valid = self._arrays[g % self.depth], self._valid[g % self.depth]
        valid[:] = 0
        for col, slot, (y0, y1, x0, x1) in self.plan.blank[g]:
            arr[col, slot, :, y0:y1, x0:x1] = NODATA

    def __iter__(self) -> Iterator[Group]:
        plan, depth = self.plan, self.depth
        strips = plan.strips
        touching: list[list[int]] = [[] for _ in plan.groups]
        for i, s in enumerate(strips):
            for g in range(s.first_group, s.last_group + 1):
                touching[g].append(i)
        futures: dict[int, Future] = {}
        counted: set[int] = set()
        submitted = 0
        ready = min(depth, len(plan.groups))  # groups 0 .. ready-1 have a prepared buffer
        for g in range(ready):
            self._prepare(g)
        try:
            for g in range(len(plan.groups)):
                while submitted < len(strips) and strips[submitted].last_group < ready:
                    futures[submitted] = self._pool.submit(self._read, strips[submitted])
                    submitted += 1
                for i in touching[g]:
                    counts = futures[i].result()
                    if i not in counted:
                        counted.add(i)
                        for p, n in zip(strips[i].placements, counts, strict=True):
                            self._valid[p.group % depth][p.col, p.slot] += n
                    if strips[i].last_group == g:
                        del futures[i]
                slot = g % depth
                yield Group(g, plan.groups[g], self.buffers[slot], self._valid[slot])
                if ready < len(plan.groups):  # group g is done with: its buffer takes group `ready`
                    self._prepare(ready)
                    ready += 1
        finally:
            for f in futures.values():
                f.cancel()


class Chips(NamedTuple):
    """Chips read by :func:`read_chips`: ``pixels`` ``(N, 4, H, W)`` uint16 (B04, B03, B02, B08; reflectance
    x 10000; 0 = nodata) and ``valid_fraction`` ``(N,)`` float, each chip's share of pixels with data (0..1)."""

    pixels: np.ndarray
    valid_fraction: np.ndarray


def read_chips(
    grid: Grid,
    year: int,
    source: str,
    chips: Sequence[tuple[int, int]],
    *,
    columns_at_once: int = 8,
    retries: int = 3,
    backoff: float = 0.5,
) -> Chips:
    """Read chips ``(column, row)`` of ``year`` from ``source``, in the order given, as the column jobs do.

    The chips form a :class:`BandPlan` (one chip per batch, up to ``columns_at_once`` columns a plan, so the
    buffers stay small) read by one :class:`BandFeed` reader: each block under them is fetched once, pieces
    on tiles that do not exist are nodata, and errors are the readers' (:mod:`wcembed.pipeline.tiles`).

    Examples
    --------
    >>> grid = Grid(["N37W076"])
    >>> chips = read_chips(grid, 2020, "outputs/sample", [grid.chip_at(-75.62, 37.67)])  # doctest: +SKIP
    >>> chips.pixels.shape, chips.valid_fraction  # doctest: +SKIP
    ((1, 4, 512, 512), array([1.]))
    """
    chips = [(grid.check_column(int(c)), int(r)) for c, r in chips]
    cs = grid.chip_size
    pixels = np.zeros((len(chips), 4, cs, cs), np.uint16)
    valid = np.zeros(len(chips), np.float64)
    at: dict[tuple[int, int], list[int]] = {}
    for i, chip in enumerate(chips):
        at.setdefault(chip, []).append(i)
    rows: dict[int, set[int]] = {}
    for c, r in at:
        rows.setdefault(c, set()).add(r)
    columns = sorted(rows)
    for k in range(0, len(columns), columns_at_once):
        plan = BandPlan(grid, {c: sorted(rows[c]) for c in columns[k : k + columns_at_once]}, batch_size=1)
        with BandFeed(plan, year, source, retries=retries, backoff=backoff) as feed:
            for group in feed:
                for col, group_rows in enumerate(group.rows):
                    for slot, r in enumerate(group_rows):
                        for i in at[(plan.columns[col], r)]:
                            pixels[i] = group.pixels[col, slot].numpy()
                            valid[i] = group.valid[col, slot] / cs**2
    return Chips(pixels, valid)
