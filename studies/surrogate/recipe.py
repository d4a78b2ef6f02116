"""Training data for a surrogate of a detailed cell: random synaptic input, somatic output.

Every trial (a sweep instance) gives each of the cell's synapses its own Poisson spike
train, drawn by :func:`dhs.engine.inputs.poisson_times` from ``(seed, trial)`` only, and
records the somatic potential and spikes. The trains go into the engine with
:meth:`Engine.add_events` and into the store beside the results (``input_times``,
``input_count``), so the dataset holds exactly what the cell was given; any trial can be
re-run on its own, in the engine or in NEURON (:func:`neuron_trial`, the same trains
through ``NetCon.event``). The layout is in ``studies/surrogate/README.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from dhs.engine import CellModel, Engine, ExtraArray, SweepResult, sweep
from dhs.engine.inputs import poisson_times

__all__ = [
    "InputPattern",
    "SurrogateCell",
    "SurrogateSettings",
    "build_cell",
    "input_raster",
    "make_dataset",
    "neuron_trial",
    "open_dataset",
]

SYNAPSES = ("ExpSyn", "AmpaNmda")


@dataclass(frozen=True)
class SurrogateSettings:
    """The cell, its synapses, their input and the run.

    Attributes
    ----------
    segment_length : float
        Longest segment in µm (1.0: NEURON's demo pyramid at 5,550 nodes; 50.0: 246).
    n_synapses : int
        Synapses, on dendritic sites drawn uniformly along the dendrites.
    synapse : {"ExpSyn", "AmpaNmda"}
        Their kind (AmpaNmda: ``dhs/engine/mod/ampanmda.mod``, compiled for NEURON).
    tau : float
        ExpSyn decay time constant in ms.
    reversal : float
        Synaptic reversal potential in mV.
    weight : float
        Weight of every input event in µS.
    rate_hz : float
        Poisson rate of every synapse's input in Hz.
    tstop, dt : float
        Run length and time step in ms.
    record_every : int
        Somatic potential sampled every ``record_every`` steps.
    max_spikes : int
        Somatic spikes kept per trial.
    seed : int
        Seed of the input trains (trial ``i`` gets ``poisson_times(..., seed=seed,
        instance=i)``).
    placement_seed : int
        Seed of the synapses' sites.
    ra, cm, g_pas, e_pas, v_init : float
        Axial resistance (Ω·cm), capacitance (µF/cm²), dendritic leak (S/cm², mV) and
        initial potential (mV); the soma has ``hh`` with NEURON's defaults.
    """

    segment_length: float = 1.0
    n_synapses: int = 100
    synapse: str = "ExpSyn"
    tau: float = 2.0
    reversal: float = 0.0
    weight: float = 0.004
    rate_hz: float = 10.0
    tstop: float = 500.0
    dt: float = 0.025
    record_every: int = 4
    max_spikes: int = 200
    seed: int = 1
    placement_seed: int = 0
    ra: float = 150.0
    cm: float = 1.0
    g_pas: float = 5e-5
    e_pas: float = -65.0
    v_init: float = -65.0

    def __post_init__(self) -> None:
        if self.synapse not in SYNAPSES:
            raise ValueError(f"synapse must be one of {SYNAPSES}, got {self.synapse!r}")
        if self.n_synapses < 1:
            raise ValueError(f"n_synapses must be positive, got {self.n_synapses}")

    @property
    def input_capacity(self) -> int:
        """Input spikes kept per synapse and trial: the mean count + 10 standard
        deviations + 10 (a Poisson count beyond it has a probability below 1e-20)."""
        mean = self.rate_hz * self.tstop / 1000.0
        return math.ceil(mean + 10.0 * math.sqrt(mean) + 10.0)


@dataclass
class SurrogateCell:
    """The NEURON cell with its synapses, and what the engine needs of it."""

    settings: SurrogateSettings
    morphology: object  # neuron_bridge.morphology.Cell
    synapses: list
    sites: list[str]
    model: CellModel | None = None
    rows: tuple[int, ...] = ()
    soma_node: int = 0
    keep: list = field(default_factory=list)

    @property
    def soma(self):
        return self.morphology.soma[0]

    def delete(self) -> None:
        self.synapses.clear()
        self.keep.clear()
        self.morphology.delete()


def build_cell(settings: SurrogateSettings) -> SurrogateCell:
    """Build NEURON's demo pyramid with the synapses and export it (needs a NEURON
    session without sections; AmpaNmda is compiled and loaded on first use)."""
    from neuron import h

    from neuron_bridge.export import export_model, point_process_order
    from neuron_bridge.morphology import discretize, load_morphology

    h.load_file("stdrun.hoc")
    if settings.synapse == "AmpaNmda":
        from neuron_bridge.compile_mod import load_mod_mechanisms

        load_mod_mechanisms()
    cell = load_morphology(name="pyramid")
    for section in cell.sections:
        section.Ra, section.cm = settings.ra, settings.cm
    discretize(cell, segment_length=settings.segment_length)
    cell.soma[0].insert("hh")
    for section in cell.dendrites:
        section.insert("pas")
        for segment in section:
            segment.pas.g, segment.pas.e = settings.g_pas, settings.e_pas
    rng = np.random.default_rng(settings.placement_seed)
    lengths = np.array([section.L for section in cell.dendrites])
    chosen = rng.choice(len(lengths), size=settings.n_synapses, p=lengths / lengths.sum())
    positions = rng.uniform(0.0, 1.0, settings.n_synapses)
    synapses, sites = [], []
    for index, x in zip(chosen.tolist(), positions.tolist(), strict=True):
        section = cell.dendrites[index]
        synapse = getattr(h, settings.synapse)(section(x))
        if settings.synapse == "ExpSyn":
            synapse.tau = settings.tau
        synapse.e = settings.reversal
        synapses.append(synapse)
        sites.append(f"{section.name()}({x:.6f})")
    built = SurrogateCell(settings, cell, synapses, sites)
    built.model = export_model(settings.v_init)
    order = [obj.hname() for obj in point_process_order(settings.synapse)]
    built.rows = tuple(order.index(synapse.hname()) for synapse in synapses)
    built.soma_node = built.model.node(_soma_name(built))
    return built


def _soma_name(cell: SurrogateCell) -> str:
    return f"{cell.soma.name()}(0.5)"


@dataclass(frozen=True)
class InputPattern:
    """The sweep's ``configure``: trial ``i``'s Poisson trains on the synapses (a function
    of ``(seed, i)`` only), returned for the store as ``input_times``/``input_count``.

    A module-level dataclass, so Dask workers can receive it.
    """

    synapse: str
    rows: tuple[int, ...]
    rate_hz: float
    weight: float
    tstop: float
    seed: int
    capacity: int

    def trains(self, trial: int) -> list[np.ndarray]:
        """Trial ``trial``'s input spike times (ms), one array per synapse."""
        return poisson_times(
            self.rate_hz, 0.0, self.tstop, seed=self.seed, instance=int(trial),
            n_synapses=len(self.rows),
        )  # fmt: skip

    def __call__(self, engine: Engine, trials: np.ndarray) -> dict[str, np.ndarray]:
        n, n_synapses = len(trials), len(self.rows)
        times = np.full((n, n_synapses, self.capacity), np.nan)
        counts = np.zeros((n, n_synapses), dtype=np.int64)
        rows = np.asarray(self.rows, dtype=np.int64)
        columns, targets, arrivals = [], [], []
        for j, trial in enumerate(np.asarray(trials).tolist()):
            for s, train in enumerate(self.trains(trial)):
                if train.size > self.capacity:
                    raise ValueError(
                        f"trial {trial}, synapse {s}: {train.size} input spikes, more than "
                        f"the capacity {self.capacity}"
                    )
                times[j, s, : train.size] = train
                counts[j, s] = train.size
                columns.append(np.full(train.size, j))
                targets.append(np.full(train.size, rows[s]))
                arrivals.append(train)
        if arrivals:
            engine.add_events(
                self.synapse,
                np.concatenate(targets),
                np.concatenate(columns),
                np.concatenate(arrivals),
                self.weight,
            )
        return {"input_times": times, "input_count": counts}


def input_pattern(cell: SurrogateCell) -> InputPattern:
    settings = cell.settings
    return InputPattern(
        settings.synapse,
        cell.rows,
        settings.rate_hz,
        settings.weight,
        settings.tstop,
        settings.seed,
        settings.input_capacity,
    )


def extra_arrays(settings: SurrogateSettings) -> dict[str, ExtraArray]:
    """The input arrays the store keeps per trial."""
    shape = (settings.n_synapses, settings.input_capacity)
    return {
        "input_times": ExtraArray(
            shape, "float64", ("synapse", "input_spike"), units="ms",
            description="input spike times per synapse: [trial, s, :input_count[trial, s]], "
            "then NaN",
        ),
        "input_count": ExtraArray(
            (settings.n_synapses,), "int64", ("synapse",),
            description="input spikes per synapse",
        ),
    }  # fmt: skip


def make_dataset(
    store: str,
    n_trials: int,
    settings: SurrogateSettings,
    *,
    cell: SurrogateCell | None = None,
    client=None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> tuple[SweepResult, float]:
    """Write ``n_trials`` trials to the Zarr store ``store`` (resumes an interrupted one).

    Parameters
    ----------
    store : str
        Directory of the Zarr store.
    n_trials : int
    settings : SurrogateSettings
    cell : SurrogateCell, optional
        The built cell (default: :func:`build_cell`, which needs a NEURON session
        without sections).
    client : distributed.Client or str, optional
        Run on a Dask cluster (default: in this process, every core).
    chunk_size : int, optional
        Trials per chunk (default: from the memory).
    progress : bool

    Returns
    -------
    (SweepResult, float)
        The store's metadata (nothing loaded) and the seconds the sweep took.
    """
    cell = build_cell(settings) if cell is None else cell
    tag = {
        "study": "studies.surrogate",
        "settings": asdict(settings),
        "synapse_sites": cell.sites,
        "synapse_rows": list(cell.rows),
        "synapse_nodes": [int(cell.model.mechanisms[settings.synapse].node[r]) for r in cell.rows],
        "soma_node": cell.soma_node,
    }
    began = time.perf_counter()
    result = sweep(
        cell.model,
        n_trials,
        input_pattern(cell),
        store,
        tstop=settings.tstop,
        dt=settings.dt,
        record_nodes=[cell.soma_node],
        record_every=settings.record_every,
        spike_node=cell.soma_node,
        max_spikes=settings.max_spikes,
        extra_arrays=extra_arrays(settings),
        tag=tag,
        client=client,
        chunk_size=chunk_size,
        progress=progress,
        load=False,
    )
    return result, time.perf_counter() - began


def neuron_trial(cell: SurrogateCell, trial: int) -> tuple[np.ndarray, np.ndarray]:
    """Trial ``trial`` in NEURON: the same trains through ``NetCon.event``.

    Returns
    -------
    (ndarray, ndarray)
        The somatic potential in mV at the dataset's samples, and the spike times in ms
        (NetCon threshold -20 mV at the soma).
    """
    from neuron import h

    settings = cell.settings
    trains = input_pattern(cell).trains(trial)
    netcons = []
    for synapse in cell.synapses:
        netcon = h.NetCon(None, synapse)
        netcon.weight[0] = settings.weight
        netcons.append(netcon)
    schedule = list(zip(netcons, trains, strict=True))
    handler = h.FInitializeHandler(
        lambda schedule=schedule: [
            netcon.event(t) for netcon, train in schedule for t in train.tolist()
        ]
    )
    trace = h.Vector().record(cell.soma(0.5)._ref_v)
    detector = h.NetCon(cell.soma(0.5)._ref_v, None, sec=cell.soma)
    detector.threshold = -20.0
    spikes = h.Vector()
    detector.record(spikes)
    h.dt = settings.dt
    h.finitialize(settings.v_init)
    for _ in range(round(settings.tstop / settings.dt)):
        h.fadvance()
    result = trace.as_numpy()[:: settings.record_every].copy(), spikes.as_numpy().copy()
    del handler, detector, netcons, schedule
    return result


def open_dataset(store: str):
    """The dataset as an xarray view for a data loader (lazy, Dask-backed).

    Variables (``trial`` is the sweep's ``instance``): ``soma_v`` (trial, time) in mV,
    ``spike_times`` (trial, spike) and ``spike_count`` (trial), ``input_times`` (trial,
    synapse, input_spike) and ``input_count`` (trial, synapse), ``finished`` (trial):
    whether the trial is written (a store still being written can be read).
    """
    import xarray

    dataset = xarray.open_zarr(store)
    chunk_size = dataset.attrs["dhs_sweep"]["chunk_size"]
    done = np.isfinite(dataset["chunk_done"].values)
    finished = np.repeat(done, chunk_size)[: dataset.sizes["instance"]]
    view = xarray.Dataset(
        {
            "soma_v": dataset["v"].isel(node=0, drop=True),
            "spike_times": dataset["spike_times"],
            "spike_count": dataset["spike_count"],
            "input_times": dataset["input_times"],
            "input_count": dataset["input_count"],
            "finished": ("instance", finished),
        },
        attrs={"surrogate": dataset.attrs["dhs_sweep"]["settings"]["tag"]},
    )
    return view.rename({"instance": "trial"})


def input_raster(input_times: np.ndarray, tstop: float, bin_ms: float) -> np.ndarray:
    """Input spike counts per time bin: ``(..., n_synapses, capacity)`` times (NaN
    padded) to ``(..., n_synapses, ceil(tstop / bin_ms))`` counts (int32)."""
    n_bins = math.ceil(tstop / bin_ms)
    times = np.asarray(input_times)
    bins = np.floor(times / bin_ms)
    valid = np.isfinite(bins) & (bins >= 0) & (bins < n_bins)
    raster = np.zeros((*times.shape[:-1], n_bins), dtype=np.int32)
    index = np.nonzero(valid)
    np.add.at(raster, (*index[:-1], bins[valid].astype(np.int64)), 1)
    return raster
