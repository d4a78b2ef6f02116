"""Plots of the spine study (``studies.spines.plots``): site coordinates against the
sections' own 3-D points, and what :func:`draw_morphology` puts on the axes."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from neuron_bridge.patterns import Sites
from neuron_bridge.spines import section_tree, spine_sites
from studies.spines.plots import draw_morphology, site_coordinates


def _end_points(section) -> np.ndarray:
    last = int(section.n3d()) - 1
    return np.array(
        [
            [section.x3d(0), section.y3d(0), section.z3d(0)],
            [section.x3d(last), section.y3d(last), section.z3d(last)],
        ]
    )


def test_site_coordinates_at_section_ends(make_cell):
    """A site at x = 0 or 1 of a section lies on its first or last 3-D point; sites
    inside a section lie within the box of its 3-D points."""
    cell = make_cell(segment_length=40.0)
    tree = section_tree(cell)
    sections = list(cell.sections)
    chosen = [1, 5, len(sections) - 1]
    ends = Sites(tree, np.repeat(chosen, 2), np.tile([0.0, 1.0], len(chosen)))
    xyz = site_coordinates(cell, ends)
    for k, s in enumerate(chosen):
        assert xyz[2 * k : 2 * k + 2] == pytest.approx(_end_points(sections[s]), abs=1e-9)
    sites = spine_sites(cell, seed=2)
    inside = site_coordinates(cell, sites)
    assert inside.shape == (len(sites), 3) and np.isfinite(inside).all()
    for s in np.unique(sites.section[:50]).tolist():
        section = sections[s]
        points = np.array(
            [[section.x3d(i), section.y3d(i), section.z3d(i)] for i in range(int(section.n3d()))]
        )
        mine = inside[sites.section == s]
        assert (mine >= points.min(axis=0) - 1e-9).all()
        assert (mine <= points.max(axis=0) + 1e-9).all()


def test_draw_morphology(make_cell):
    """One line per section with 3-D points, one scatter for the spine sites and one per
    mark, with the marks' sizes."""
    cell = make_cell(segment_length=40.0)
    sites = spine_sites(cell, seed=2)
    ax = Figure().subplots()  # no pyplot: nothing to close, no backend needed
    draw_morphology(ax, cell, sites, [(sites.subset([0, 1, 2]), {"s": 9, "label": "three"})])
    drawn = sum(1 for section in cell.sections if section.n3d() >= 2)
    assert len(ax.lines) == drawn
    spines, marked = ax.collections
    assert len(spines.get_offsets()) == len(sites)
    assert len(marked.get_offsets()) == 3 and marked.get_sizes().tolist() == [9]
    expected = site_coordinates(cell, sites.subset([0, 1, 2]))[:, :2]
    np.testing.assert_allclose(np.asarray(marked.get_offsets()), expected, rtol=0, atol=1e-12)
    assert ax.get_xlabel() == "x (µm)" and ax.get_ylabel() == "y (µm)"
