"""Plots of the spine study: a cell and its spine sites drawn with matplotlib."""

from __future__ import annotations

import numpy as np

from neuron_bridge.morphology import Cell
from neuron_bridge.patterns import Sites

__all__ = ["draw_morphology", "site_coordinates"]


def site_coordinates(cell: Cell, sites: Sites) -> np.ndarray:
    """3-D coordinates (µm) of ``sites`` on ``cell``, interpolated along each section's
    3-D points by arc length; shape ``(len(sites), 3)``."""
    sections = list(cell.sections)
    out = np.zeros((len(sites), 3))
    for s in np.unique(sites.section).tolist():
        section = sections[s]
        n = int(section.n3d())
        if n == 0:
            raise ValueError(f"{section.name()} has no 3-D points (call h.define_shape())")
        arc = np.array([section.arc3d(i) for i in range(n)])
        xyz = np.array([[section.x3d(i), section.y3d(i), section.z3d(i)] for i in range(n)])
        mine = np.flatnonzero(sites.section == s)
        where = sites.x[mine] * arc[-1]
        for axis in range(3):
            out[mine, axis] = np.interp(where, arc, xyz[:, axis])
    return out


def draw_morphology(
    ax,
    cell: Cell,
    sites: Sites | None = None,
    marks=(),
    *,
    plane: str = "xy",
    spine_size: float = 0.4,
) -> None:
    """Draw ``cell`` with matplotlib from its sections' 3-D points (no ``h.PlotShape``).

    Parameters
    ----------
    ax : matplotlib Axes
    cell : Cell
        Its own sections are drawn (spine sections are not: they are drawn as dots).
    sites : Sites, optional
        Spine sites, drawn as small grey dots.
    marks : sequence of (Sites, dict)
        More sites drawn on top, each with matplotlib ``scatter`` keywords (``color``,
        ``s``, ``label``).
    plane : {"xy", "xz", "yz"}
        The projection.
    spine_size : float
        Marker size of the spine dots.
    """
    axes = ["xyz".index(c) for c in plane]
    for section in cell.sections:
        n = int(section.n3d())
        if n < 2:
            continue
        xyz = np.array([[section.x3d(i), section.y3d(i), section.z3d(i)] for i in range(n)])
        width = float(np.clip(np.mean([section.diam3d(i) for i in range(n)]), 0.3, 6.0))
        ax.plot(
            xyz[:, axes[0]],
            xyz[:, axes[1]],
            color="0.35",
            linewidth=width * 0.6,
            solid_capstyle="round",
        )
    if sites is not None and len(sites):
        where = site_coordinates(cell, sites)
        ax.scatter(
            where[:, axes[0]],
            where[:, axes[1]],
            s=spine_size,
            color="0.65",
            linewidths=0,
            label=f"spines ({len(sites)})",
        )
    for marked, style in marks:
        where = site_coordinates(cell, marked)
        ax.scatter(where[:, axes[0]], where[:, axes[1]], linewidths=0, **style)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{plane[0]} (µm)")
    ax.set_ylabel(f"{plane[1]} (µm)")
