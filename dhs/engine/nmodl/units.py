"""Named unit factors of ``UNITS`` blocks (``FARADAY = (faraday) (coulomb)``).

nocmodl computes these from NEURON's unit database (``nrnunits.lib``, CODATA 2018
values in NEURON 9). The table holds the factors real models use, as the exact doubles
nocmodl 9.0.2 writes into its C++ (checked against nocmodl in
``tests/engine/test_nmodl_units.py``); a factor not in the table is reported as
unsupported rather than guessed.
"""

from __future__ import annotations

__all__ = ["FACTORS", "factor_value"]

_FARADAY = float.fromhex("0x1.78e555060882cp+16")  # 96485.33212331001 C/mol
_GAS = float.fromhex("0x1.0a1013e8990bep+3")  # 8.31446261815324 J/(mol K)

#: (unit, target unit) -> value, as nocmodl writes it.
FACTORS: dict[tuple[str, str], float] = {
    ("faraday", "coulomb"): _FARADAY,
    ("faraday", "coulombs"): _FARADAY,
    ("faraday", "coul"): _FARADAY,
    ("faraday", "kilocoulombs"): float.fromhex("0x1.81f0fae775425p+6"),
    ("k-mole", "joule/degC"): _GAS,
    ("pi", "1"): float.fromhex("0x1.921fb54442d18p+1"),
    ("e", "coulomb"): float.fromhex("0x1.7a4da290c1653p-63"),
    ("e", "coulombs"): float.fromhex("0x1.7a4da290c1653p-63"),
    ("k", "joule/degC"): float.fromhex("0x1.0b0e6d55e647cp-76"),
    ("mole", "1"): float.fromhex("0x1.fe185ca57c517p+78"),
}


def factor_value(unit: str, target: str) -> float | None:
    """The factor ``(unit) (target)``, or None when it is not in :data:`FACTORS`."""
    return FACTORS.get((unit.strip(), target.strip()))
