"""The settings of one engine run, checked once: shared by :meth:`Engine.run`,
:func:`dhs.engine.sweep` and the memory estimate."""

from __future__ import annotations

from dataclasses import dataclass

from .. import checks

__all__ = ["RunOptions", "run_options"]


@dataclass(frozen=True)
class RunOptions:
    """What to run and what to record.

    Attributes
    ----------
    tstop : float
        End time in ms; ``round(tstop / dt)`` steps are taken.
    dt : float
        Time step in ms.
    record_nodes : tuple of int or str
        Nodes (indices or names from ``model.node_names``) whose potential is recorded
        at t = 0 and every ``record_every`` steps.
    record : tuple of (str, int or str)
        Other variables to record: ``("cai", node)`` for an ion variable (``ena``,
        ``cai``, ``ica``, ...), ``("NaTa_t.m", node)`` for a density mechanism's
        variable, ``("ExpSyn.g", row_or_label)`` for a point process's.
    record_every : int
    spike_node : int or str or None
        Node watched for spikes (NetCon-style threshold detection).
    spike_threshold : float
        mV.
    spike_method : {"neuron", "interpolate"}
        ``"neuron"``: the step's time + 1e-10 ms, as NEURON's NetCon; ``"interpolate"``:
        the linear interpolation of the crossing.
    max_spikes : int or None
        Spikes kept per instance (default: as many as can occur).
    """

    tstop: float
    dt: float = 0.025
    record_nodes: tuple = ()
    record: tuple = ()
    record_every: int = 1
    spike_node: int | str | None = None
    spike_threshold: float = -20.0
    spike_method: str = "neuron"
    max_spikes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dt", checks.time_step("dt", self.dt))
        object.__setattr__(self, "tstop", checks.stop_time("tstop", self.tstop))
        object.__setattr__(
            self, "record_every", checks.positive_int("record_every", self.record_every)
        )
        checks.one_of("spike_method", self.spike_method, ("neuron", "interpolate"))
        object.__setattr__(
            self,
            "spike_threshold",
            checks.finite_number("spike_threshold", self.spike_threshold, unit="mV"),
        )
        if self.max_spikes is not None:
            object.__setattr__(
                self, "max_spikes", checks.non_negative_int("max_spikes", self.max_spikes)
            )
        nodes = () if self.record_nodes is None else tuple(self.record_nodes)
        object.__setattr__(self, "record_nodes", nodes)
        records = tuple(tuple(item) for item in (self.record or ()))
        for item in records:
            if len(item) != 2 or not isinstance(item[0], str):
                raise ValueError(f"record entries are (variable name, where), got {item!r}")
        object.__setattr__(self, "record", records)

    @property
    def n_steps(self) -> int:
        return round(self.tstop / self.dt)

    @property
    def n_samples(self) -> int:
        return self.n_steps // self.record_every + 1

    @property
    def kept_spikes(self) -> int:
        return self.n_steps // 2 + 1 if self.max_spikes is None else int(self.max_spikes)


def run_options(
    tstop,
    dt: float = 0.025,
    record_nodes=None,
    record=(),
    record_every: int = 1,
    spike_node=None,
    spike_threshold: float = -20.0,
    spike_method: str = "neuron",
    max_spikes: int | None = None,
) -> RunOptions:
    """``tstop`` itself when it is a :class:`RunOptions`, else one made of the arguments
    (the loose form of :meth:`Engine.run` and :func:`dhs.engine.sweep`)."""
    if isinstance(tstop, RunOptions):
        return tstop
    return RunOptions(
        tstop,
        dt,
        () if record_nodes is None else tuple(record_nodes),
        tuple(record),
        record_every,
        spike_node,
        spike_threshold,
        spike_method,
        max_spikes,
    )
