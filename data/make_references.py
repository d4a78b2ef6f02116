"""Build the committed reference traces in ``data/references/`` with NEURON itself.

Run from the repository root (needs the ``neuron`` wheel and this checkout)::

    python data/make_references.py

``pyramid_traces.npz``
    NEURON's demo pyramidal cell as ``benchmarks.models.pyramid_model`` builds it
    (20 µm segments: hh soma, pas dendrites, IClamp 0.4 nA from 10 to 60 ms, 8 ExpSyn
    driven by one NetStim), run by NEURON with ``h.finitialize(-65)`` and 4,000
    ``h.fadvance()`` steps of 0.025 ms (100 ms), once with hh's rate tables off
    (``usetable_hh = 0``) and once with them on. Arrays: ``t`` (ms, NEURON's accumulated
    time), ``v_tables_off`` and ``v_tables_on`` (mV, shape (n_probes, n_times)),
    ``spikes_tables_off``/``spikes_tables_on`` (ms; NetCon threshold -20 mV at the soma),
    ``probe_names``, ``probe_nodes`` (NEURON's node index of each probe), and
    ``neuron_version``.

The run is deterministic: the same NEURON rewrites the same numbers (the archive has
fixed zip timestamps). ``tests/test_references.py`` checks that NEURON still produces
them and that the engine reproduces them.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "references" / "pyramid_traces.npz"
SEGMENT_LENGTH = 20.0  # µm
TSTOP = 100.0  # ms
DT = 0.025  # ms
V_INIT = -65.0  # mV
THRESHOLD = -20.0  # mV


def pyramid_reference(usetable: int) -> dict:
    """Build the model, run it in NEURON, delete it; the traces and spikes."""
    from neuron import h

    from benchmarks.models import pyramid_model

    h.load_file("stdrun.hoc")
    h.usetable_hh = usetable
    model = pyramid_model(segment_length=SEGMENT_LENGTH)
    try:
        far = model.far_dendrite()
        probes = {"soma(0.5)": model.soma(0.5), "far(0.5)": far(0.5), "far(1)": far(1)}
        vectors = [h.Vector().record(segment._ref_v) for segment in probes.values()]
        times = h.Vector().record(h._ref_t)
        detector = h.NetCon(model.soma(0.5)._ref_v, None, sec=model.soma)
        detector.threshold = THRESHOLD
        spikes = h.Vector()
        detector.record(spikes)
        h.dt = DT
        h.finitialize(V_INIT)
        for _ in range(round(TSTOP / DT)):
            h.fadvance()
        result = {
            "t": times.as_numpy().copy(),
            "v": np.array([vector.as_numpy().copy() for vector in vectors]),
            "spikes": spikes.as_numpy().copy(),
            "probe_names": np.array(list(probes)),
            "probe_nodes": np.array([seg.node_index() for seg in probes.values()], np.int64),
        }
        del detector
        return result
    finally:
        h.usetable_hh = 1
        model.delete()


def build() -> dict:
    import neuron

    off, on = pyramid_reference(0), pyramid_reference(1)
    assert np.array_equal(off["t"], on["t"])
    assert np.array_equal(off["probe_nodes"], on["probe_nodes"])
    return {
        "t": off["t"],
        "v_tables_off": off["v"],
        "v_tables_on": on["v"],
        "spikes_tables_off": off["spikes"],
        "spikes_tables_on": on["spikes"],
        "probe_names": off["probe_names"],
        "probe_nodes": off["probe_nodes"],
        "neuron_version": np.array(neuron.__version__),
        "segment_length_um": np.array(SEGMENT_LENGTH),
        "dt_ms": np.array(DT),
        "v_init_mV": np.array(V_INIT),
    }


def write_npz(path: Path, arrays: dict) -> None:
    """``np.savez`` with fixed timestamps, so the bytes depend on the data only."""
    import io

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def main() -> int:
    sys.path.insert(0, str(ROOT))
    arrays = build()
    write_npz(OUT, arrays)
    print(
        f"wrote {OUT.relative_to(ROOT)}: {arrays['v_tables_off'].shape[1]} samples x "
        f"{len(arrays['probe_names'])} probes; spikes (tables off/on): "
        f"{arrays['spikes_tables_off'].size}/{arrays['spikes_tables_on'].size}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
