"""The Zarr store of a sweep: its layout, creation, chunk writes, done markers and reads.

One sweep is one Zarr (format 3) group, a directory on a file system that the client and
every worker see. Its layout (``dhs/engine/SWEEPS.md``):

``v`` (instance, node, time), float64, mV
    The membrane potential at the recorded nodes.
``spike_times`` (instance, spike), float64, ms, and ``spike_count`` (instance,), int64
    Instance ``i``'s spikes are ``spike_times[i, :spike_count[i]]``; the rest is NaN
    (only with a spike node).
``<name>@<where>`` (instance, time), float64
    Each variable of ``record`` (``"cai@soma(0.5)"``, the key of ``RunResult.records``).
``<extra>`` (instance, ...)
    Each :class:`ExtraArray` that ``configure`` returns (inputs, parameters, ...).
``time`` (time,), ms; ``node`` (node,); ``instance`` (instance,)
    Coordinates: the sample times (NEURON's accumulated t), the recorded node indices
    and the global instance indices.
``chunk_done`` (chunk,), float64
    The done marker of sweep chunk ``c``: the UNIX time (s) at which its last array was
    written, NaN until then.

Every per-instance array is split along ``instance`` exactly at the sweep's chunks: a
sweep chunk is one Zarr chunk, or, when that would be larger than
:data:`INNER_CHUNK_BYTES`, one Zarr *shard* (one file) of smaller inner chunks, so that
a reader (a data loader picking single trials) never decompresses more than about
:data:`INNER_CHUNK_BYTES` to get one instance. Writers of different sweep chunks
therefore never touch the same file. Chunks are compressed (Blosc/zstd) and carry a
CRC-32C, so a damaged file is detected when read.

The attribute ``dhs_sweep`` of the group holds the settings, the fingerprint, the run
options, the memory estimate and the machines (``runs``). The store is written in a
temporary directory and renamed into place, so it either exists complete or not at all;
Zarr's local store writes every file through a temporary name and a rename, so a file is
always whole; the marker of a chunk is written after all its arrays.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ATTRIBUTE",
    "FORMAT",
    "INNER_CHUNK_BYTES",
    "ExtraArray",
    "StoreLayout",
    "chunk_is_readable",
    "clear_marker",
    "create_store",
    "finished_chunks",
    "read_attributes",
    "read_model_bytes",
    "remove_stale_files",
    "update_attributes",
    "write_chunk",
]

FORMAT = "dhs.engine.sweep/2"
#: The group attribute that holds the sweep's description.
ATTRIBUTE = "dhs_sweep"
#: Largest uncompressed inner chunk (bytes) of a per-instance array; a sweep chunk that
#: is larger becomes a shard of inner chunks of at most this size.
INNER_CHUNK_BYTES = 4 * 2**20
DONE = "chunk_done"
#: Names a per-instance array may not take.
RESERVED = frozenset({"v", "spike_times", "spike_count", "time", "node", "instance", DONE})


def _zarr():
    try:
        import zarr
    except ImportError as error:  # pragma: no cover - zarr is in the 'dask' extra
        raise ImportError(
            "sweeps are stored with Zarr 3: pip install 'zarr>=3' (or dhs[dask])"
        ) from error
    return zarr


@dataclass(frozen=True)
class ExtraArray:
    """A per-instance array that ``configure`` returns for each chunk, stored beside the
    results (the inputs a trial was given, its drawn parameters).

    Attributes
    ----------
    shape : tuple of int
        Shape per instance (``()`` for one value per instance).
    dtype : str
        NumPy dtype name (``"float64"``, ``"int64"``, ``"bool"``, ...).
    dimensions : tuple of str
        Names of the dimensions of ``shape`` (for xarray; default ``<name>_0``, ...).
    fill_value : float or int or bool, optional
        Value of instances not written yet. Default: NaN for floats, -1 for integers,
        False for bools.
    units : str
        Units (an attribute of the array), e.g. ``"ms"``.
    description : str
        What it is (an attribute of the array).
    """

    shape: tuple[int, ...] = ()
    dtype: str = "float64"
    dimensions: tuple[str, ...] = ()
    fill_value: float | int | bool | None = None
    units: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"ExtraArray shape must not be negative, got {shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        dimensions = tuple(str(d) for d in self.dimensions)
        if dimensions and len(dimensions) != len(shape):
            raise ValueError(f"ExtraArray has {len(shape)} dimensions, {len(dimensions)} names")
        object.__setattr__(self, "dimensions", dimensions)
        if self.fill_value is None:
            kind = np.dtype(self.dtype).kind
            fill = math.nan if kind in "fc" else (False if kind == "b" else -1)
            object.__setattr__(self, "fill_value", fill)

    def names(self, name: str) -> tuple[str, ...]:
        """The dimension names after ``instance``."""
        return self.dimensions or tuple(f"{name}_{k}" for k in range(len(self.shape)))

    def describe(self) -> dict:
        """JSON form (part of the sweep's fingerprint)."""
        fill = self.fill_value
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "dimensions": list(self.dimensions),
            "fill_value": "NaN" if isinstance(fill, float) and math.isnan(fill) else fill,
            "units": self.units,
            "description": self.description,
        }


@dataclass(frozen=True)
class StoreLayout:
    """What a sweep store holds: its per-instance arrays and their chunking.

    Attributes
    ----------
    n_instances, chunk_size : int
    time : ndarray, shape (n_times,)
        Sample times in ms.
    record_nodes : tuple of int
    record_names : tuple of str
        Keys of the ``record`` variables (``"cai@soma(0.5)"``).
    spike_capacity : int or None
        Spike times kept per instance; None without a spike node.
    extra : dict of str to ExtraArray
    """

    n_instances: int
    chunk_size: int
    time: np.ndarray
    record_nodes: tuple[int, ...] = ()
    record_names: tuple[str, ...] = ()
    spike_capacity: int | None = None
    extra: dict[str, ExtraArray] = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_instances // self.chunk_size)

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Global instances ``start, stop`` of sweep chunk ``chunk``."""
        start = chunk * self.chunk_size
        return start, min(self.n_instances, start + self.chunk_size)

    def arrays(self) -> dict[str, dict]:
        """Every per-instance array: shape per instance, dtype, dimensions, fill, attributes."""
        n_times = int(self.time.size)
        arrays = {
            "v": {
                "shape": (len(self.record_nodes), n_times),
                "dtype": "float64",
                "dimensions": ("node", "time"),
                "fill_value": math.nan,
                "attributes": {"units": "mV", "long_name": "membrane potential"},
            }
        }
        if self.spike_capacity is not None:
            arrays["spike_times"] = {
                "shape": (int(self.spike_capacity),),
                "dtype": "float64",
                "dimensions": ("spike",),
                "fill_value": math.nan,
                "attributes": {
                    "units": "ms",
                    "long_name": "spike times; instance i's are [i, :spike_count[i]], then NaN",
                },
            }
            arrays["spike_count"] = {
                "shape": (),
                "dtype": "int64",
                "dimensions": (),
                "fill_value": -1,
                "attributes": {"long_name": "spikes kept per instance (-1: not computed yet)"},
            }
        for name in self.record_names:
            arrays[name] = {
                "shape": (n_times,),
                "dtype": "float64",
                "dimensions": ("time",),
                "fill_value": math.nan,
                "attributes": {"long_name": f"recorded variable {name}"},
            }
        for name, spec in self.extra.items():
            arrays[name] = {
                "shape": spec.shape,
                "dtype": spec.dtype,
                "dimensions": spec.names(name),
                "fill_value": spec.fill_value,
                "attributes": {"units": spec.units, "long_name": spec.description},
            }
        return arrays

    def stored_bytes_per_instance(self) -> int:
        """Uncompressed bytes of one instance's results in the store."""
        return sum(
            math.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize for a in self.arrays().values()
        )


def inner_chunk(chunk_size: int, bytes_per_instance: int) -> int:
    """Instances per inner chunk: the largest divisor of ``chunk_size`` whose chunk holds
    at most :data:`INNER_CHUNK_BYTES` (at least one instance)."""
    limit = max(1, INNER_CHUNK_BYTES // max(1, bytes_per_instance))
    if limit >= chunk_size:
        return chunk_size
    divisors = set()
    for d in range(1, math.isqrt(chunk_size) + 1):
        if chunk_size % d == 0:
            divisors.update((d, chunk_size // d))
    return max(d for d in divisors if d <= limit)


def _codecs(dtype: str) -> list:
    from zarr.codecs import BloscCodec, Crc32cCodec

    # byte shuffle helps float traces (about 20 % smaller than zstd alone)
    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"), Crc32cCodec()]


def create_store(path: str, layout: StoreLayout, attributes: dict, model_npz: bytes) -> None:
    """Create the store at ``path`` with every array (unwritten), the model
    (``model/npz``: the bytes of :meth:`CellModel.save`) and the attributes.

    It is built in a temporary directory next to ``path`` and renamed into place, so a
    store under ``path`` is always complete. ``path`` must not exist, or be an empty
    directory.
    """
    zarr = _zarr()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # not tempfile.mkdtemp: its mode 0700 would keep other users from reading the store
    temporary = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex}.creating")
    os.mkdir(temporary)
    try:
        group = zarr.open_group(temporary, mode="w", zarr_format=3)
        n, size = layout.n_instances, layout.chunk_size
        for name, spec in layout.arrays().items():
            per_instance = math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize
            inner = inner_chunk(size, per_instance)
            chunks = (inner, *spec["shape"])
            group.create_array(
                name,
                shape=(n, *spec["shape"]),
                chunks=chunks,
                shards=None if inner == size else (size, *spec["shape"]),
                dtype=spec["dtype"],
                fill_value=spec["fill_value"],
                compressors=_codecs(spec["dtype"]),
                dimension_names=("instance", *spec["dimensions"]),
                attributes=spec["attributes"],
            )
        coordinates = {
            "time": (layout.time, ("time",), {"units": "ms", "long_name": "time"}),
            "node": (
                np.asarray(layout.record_nodes, dtype=np.int64),
                ("node",),
                {"long_name": "recorded node (index into the model's nodes)"},
            ),
        }
        for name, (values, dimensions, described) in coordinates.items():
            array = group.create_array(
                name,
                shape=values.shape,
                chunks=(max(1, values.size),),
                dtype=values.dtype,
                dimension_names=dimensions,
                attributes=described,
            )
            if values.size:
                array[:] = values
        instance = group.create_array(
            "instance",
            shape=(n,),
            chunks=(size,),
            dtype="int64",
            dimension_names=("instance",),
            attributes={"long_name": "global instance index"},
        )
        instance[:] = np.arange(n, dtype=np.int64)
        group.create_array(
            DONE,
            shape=(layout.n_chunks,),
            chunks=(1,),
            dtype="float64",
            fill_value=math.nan,
            compressors=None,
            dimension_names=("chunk",),
            attributes={
                "units": "s",
                "long_name": "UNIX time at which the sweep chunk was complete (NaN: not yet); "
                "chunk c holds instances [c * chunk_size, (c + 1) * chunk_size)",
            },
        )
        model = group.create_group("model")
        model.attrs["description"] = (
            "the sweep's CellModel as the bytes of CellModel.save(): "
            "dhs.engine.load_model(io.BytesIO(store['model/npz'][:].tobytes()))"
        )
        blob = np.frombuffer(model_npz, dtype=np.uint8)
        saved = model.create_array(
            "npz", shape=blob.shape, chunks=(max(1, blob.size),), dtype="uint8",
            dimension_names=("byte",),
        )  # fmt: skip
        saved[:] = blob
        with warnings.catch_warnings():  # "consolidated metadata is not in the v3 spec"
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(temporary)
        group = zarr.open_group(temporary, mode="r+")
        group.attrs[ATTRIBUTE] = _json(attributes)  # last: what makes it a sweep store
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _json(value):
    """``value`` with JSON types only: tuples as lists, NumPy scalars as Python numbers,
    NaN and infinities as None, anything else as its ``str``."""
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def read_attributes(path: str) -> dict | None:
    """The ``dhs_sweep`` attribute of the store at ``path``; None if ``path`` does not exist
    or is an empty directory.

    Raises
    ------
    ValueError
        ``path`` holds something else (files that are not a sweep store), or a sweep of
        another format.
    """
    if not os.path.exists(path):
        return None
    if os.path.isdir(path) and not os.listdir(path):
        return None
    if os.path.isfile(os.path.join(path, "sweep.json")):
        raise ValueError(
            f"{path} holds a sweep in the npz format of dhs.engine.sweep/1, which this "
            f"version neither reads nor resumes; {FORMAT} stores sweeps in Zarr"
        )
    if not os.path.isfile(os.path.join(path, "zarr.json")):
        raise ValueError(f"{path} exists and is not a sweep store (no zarr.json); not touched")
    group = _zarr().open_group(path, mode="r")
    attributes = group.attrs.get(ATTRIBUTE)
    if not isinstance(attributes, dict):
        raise ValueError(f"{path} is a Zarr group but not a sweep store (no {ATTRIBUTE!r})")
    if attributes.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} store (format {attributes.get('format')!r})")
    return dict(attributes)


def remove_stale_files(path: str) -> int:
    """Remove what killed writers left: Zarr's temporary ``*.partial`` files in the store
    and half-created stores (``.<name>.*.creating``) beside it. Returns how many.

    Safe while other writers run: a writer whose temporary file goes fails, and its
    chunk, which has no done marker yet, is computed again.
    """
    removed = 0
    for folder, _directories, names in os.walk(path):
        for name in names:
            if name.endswith(".partial"):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    parent, base = os.path.split(os.path.abspath(path))
    for name in os.listdir(parent):
        if name.startswith(f".{base}.") and name.endswith(".creating"):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed += 1
    return removed


def update_attributes(path: str, update) -> dict:
    """Apply ``update(attributes)`` (which changes the dict in place) and write it back;
    only the client does this."""
    group = _zarr().open_group(path, mode="r+")
    attributes = dict(group.attrs[ATTRIBUTE])
    update(attributes)
    group.attrs[ATTRIBUTE] = _json(attributes)
    return attributes


def read_model_bytes(path: str) -> bytes:
    """The saved model (``model/npz``) of a store."""
    return _zarr().open_group(path, mode="r")["model/npz"][:].tobytes()


def finished_chunks(path: str | os.PathLike) -> np.ndarray:
    """Which sweep chunks are complete (bool per chunk), from the done markers.

    Works while a sweep is running: a chunk counts once its last array is written.
    """
    group = _zarr().open_group(os.fspath(path), mode="r")
    return np.isfinite(group[DONE][:])


def write_chunk(path: str, fingerprint: str, chunk: int, start: int, arrays: dict) -> float:
    """Write the per-instance ``arrays`` of one sweep chunk (rows ``start ..``), then its
    done marker; returns the marker's time.

    Raises
    ------
    ValueError
        The store belongs to another sweep (its fingerprint differs): nothing written.
    """
    zarr = _zarr()
    group = zarr.open_group(path, mode="r+")
    found = group.attrs.get(ATTRIBUTE, {}).get("fingerprint")
    if found != fingerprint:
        raise ValueError(
            f"{path} now holds another sweep (fingerprint {str(found)[:12]}…, this chunk's "
            f"{fingerprint[:12]}…); chunk {chunk} not written"
        )
    for name, values in arrays.items():
        group[name][start : start + len(values)] = values
    finished = time.time()
    group[DONE][chunk] = finished
    return finished


def clear_marker(path: str, chunk: int) -> None:
    """Mark a chunk as not done (before it is computed again)."""
    group = _zarr().open_group(path, mode="r+")
    group[DONE][chunk] = math.nan


def chunk_is_readable(path: str, layout: StoreLayout, chunk: int) -> bool:
    """Whether every per-instance array of a chunk reads back (checksums included)."""
    group = _zarr().open_group(path, mode="r")
    start, stop = layout.bounds(chunk)
    try:
        values = {name: group[name][start:stop] for name in layout.arrays()}
    except Exception:  # a damaged file: zarr and its codecs raise various errors
        return False
    # A missing file reads as the fill value (zarr writes no chunk that is all fill).
    v = values["v"]
    if v.size and np.isnan(v).all():
        return False
    return "spike_count" not in values or bool((values["spike_count"] >= 0).all())
