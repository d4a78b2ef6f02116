"""NEURON against the engine on small cells with compiled ``.mod`` files, in a child
process (NEURON loads one ``nrnivmodl`` library per process for good, so each set of
files gets its own process).

Run as ``python mod_cells.py CONFIG.json``; :func:`compare_in_child` does that and
returns the parsed results. Each case builds a soma and a dendrite with pas, inserts
its mechanisms everywhere (with optional parameter values), drives the soma with an
IClamp, and runs NEURON and the engine (two instances) with the fixed step; the result
is the largest |ΔV| at the soma and the dendrite tip, the spike counts, and any
recorded ion variable's largest difference (with ``"report_ranges": True``, also
NEURON's range and largest magnitude of each trace, keyed ``range:`` and ``scale:``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def compare_in_child(
    mod_dir: Path, cases: list[dict], tmp_path: Path, timeout: float = 1200
) -> dict:
    """Run the cases in a child process; returns ``{case name: result dict}``."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mod_dir": str(mod_dir), "cases": cases}))
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent.parent), str(HERE), environment.get("PYTHONPATH", "")]
    )
    completed = subprocess.run(
        [sys.executable, str(Path(__file__)), str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    if completed.returncode != 0:
        raise AssertionError(
            f"child failed ({completed.returncode}):\n{completed.stdout[-3000:]}"
            f"\n{completed.stderr[-5000:]}"
        )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULTS "):
            return json.loads(line[len("RESULTS ") :])
    raise AssertionError(f"no results from the child:\n{completed.stdout[-3000:]}")


def _run_case(case: dict) -> dict:
    import numpy as np
    from neuron import h

    from dhs.engine import Engine
    from neuron_bridge.export import export_model

    h.load_file("stdrun.hoc")
    for section in list(h.allsec()):
        h.delete_section(sec=section)
    h.celsius = case.get("celsius", 6.3)
    soma = h.Section(name="soma")
    soma.L = soma.diam = 20.0
    dend = h.Section(name="dend")
    dend.L, dend.diam, dend.nseg = 200.0, 1.5, 9
    dend.connect(soma(1))
    for section in (soma, dend):
        section.insert("pas")
        for segment in section:
            segment.pas.g, segment.pas.e = 1e-4, -65.0
        for name in case["mechanisms"]:
            section.insert(name)
    for key, value in case.get("parameters", {}).items():
        for section in (soma, dend):
            for segment in section:
                setattr(segment, key, value)
    for ion, value in case.get("ions", {}).items():
        for section in (soma, dend):
            for segment in section:
                setattr(segment, ion, value)
    clamp = h.IClamp(soma(0.5))
    clamp.delay, clamp.dur, clamp.amp = 2.0, case.get("duration", 20.0), case.get("amp", 0.3)
    tstop = case.get("tstop", 40.0)
    h.v_init = case.get("v_init", -65.0)
    recorded = {"v@soma": soma(0.5)._ref_v, "v@dend": dend(0.95)._ref_v}
    for variable in case.get("record", []):
        # "mechanism.variable" is NEURON's "variable_mechanism"
        mechanism, _, name = variable.rpartition(".")
        reference_name = f"_ref_{name}_{mechanism}" if mechanism else f"_ref_{variable}"
        recorded[f"{variable}@soma"] = getattr(soma(0.5), reference_name)
    vectors = {key: h.Vector().record(reference) for key, reference in recorded.items()}
    h.dt = 0.025
    h.cvode.active(0)
    h.finitialize(h.v_init)
    h.continuerun(tstop)
    reference = {key: np.array(vector) for key, vector in vectors.items()}
    model = export_model()
    soma_node = int(soma(0.5).node_index())
    records = [(variable, soma_node) for variable in case.get("record", [])]
    result = Engine(model, 2).run(
        tstop,
        record_nodes=[soma_node, int(dend(0.95).node_index())],
        record=records,
        spike_node=soma_node,
    )
    out = {
        "mechanisms": list(model.mechanisms),
        "ions": {k: int(t.style[0]) for k, t in model.ions.items()},
    }
    for instance in range(2):
        for r, key in enumerate(("v@soma", "v@dend")):
            difference = float(np.abs(result.v[instance, r] - reference[key]).max())
            out[key] = max(out.get(key, 0.0), difference)
        for variable, _node in records:
            key = f"{variable}@soma"
            engine_trace = result.records[f"{variable}@{soma_node}"][instance]
            out[key] = max(out.get(key, 0.0), float(np.abs(engine_trace - reference[key]).max()))
    if case.get("report_ranges"):
        # NEURON's range and largest magnitude of each trace (for relative tolerances)
        for key, trace in reference.items():
            out[f"range:{key}"] = [float(trace.min()), float(trace.max())]
            out[f"scale:{key}"] = float(np.abs(trace).max())
    v = reference["v@soma"]
    out["neuron_spikes"] = int(np.sum((v[1:] > -20.0) & (v[:-1] <= -20.0)))
    out["engine_spikes"] = int(result.spikes[0].size)
    out["v_range"] = [float(v.min()), float(v.max())]
    return out


def main(config_path: str) -> None:
    config = json.loads(Path(config_path).read_text())
    from neuron_bridge.compile_mod import load_mod_mechanisms

    load_mod_mechanisms(config["mod_dir"])
    results = {case["name"]: _run_case(case) for case in config["cases"]}
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
