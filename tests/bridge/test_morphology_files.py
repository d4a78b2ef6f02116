"""``load_morphology`` on real and malformed files, with NEURON in a child process.

Real files: every SWC and ASC file of the bluepyopt 1.14.26 sdist, the neuron-morphology
1.2.2 wheel and the navis 1.10.0 wheel (fetched at test time). Each either loads into the
same tree as NEURON's own Import3d builds from a parent-first copy renumbered here with
networkx (same sections, same total length, same matrix rows), or gives a ValueError
naming the file. Malformed files, written by the tests, give a ValueError naming the
line and the sample, never a crash. All files of a group run in one child process.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("neuron")

# samples not numbered parent-before-child: NEURON 9's Import3d segfaults on it as it is
ALLEN_FILE = "17545-6151-X24259-Y36270.swc"

ROOT_LINE = "1 1 0 0 0 5 -1\n"
# (id, file text, the message: line and sample)
MALFORMED = [
    ("missing-parent", ROOT_LINE + "2 3 10 0 0 1 1\n3 3 20 0 0 1 7\n",
     r"cell\.swc:3: sample 3 names parent 7, which is not a sample"),
    ("duplicate-id", ROOT_LINE + "2 3 10 0 0 1 1\n2 3 20 0 0 1 1\n",
     r"cell\.swc:3: sample id 2 appears more than once \(first at line 2\)"),
    ("cycle", ROOT_LINE + "2 3 10 0 0 1 1\n3 3 20 0 0 1 4\n4 3 30 0 0 1 3\n",
     r"cell\.swc:3: sample 3 is on a cycle of parent links: 3 -> 4 -> 3 \(lines 3, 4\)"),
    ("self-parent", ROOT_LINE + "2 3 10 0 0 1 2\n",
     r"cell\.swc:2: sample 2 is its own parent"),
    ("no-root", "1 1 0 0 0 5 2\n2 3 10 0 0 1 1\n",
     r"cell\.swc: no root \(no sample has parent -1\); sample 1 is on a cycle .* \(lines 1, 2\)"),
    ("six-fields", ROOT_LINE + "2 3 10 0 0 1\n",
     r"cell\.swc:2: an SWC sample needs 7 fields \(id type x y z radius parent\), got 6"),
    ("text-type", ROOT_LINE + "2 dendrite 10 0 0 1 1\n",
     r"cell\.swc:2: sample 2: the type field 'dendrite' is not a number"),
    ("text-coordinate", ROOT_LINE + "2 3 10 zero 0 1 1\n",
     r"cell\.swc:2: sample 2: the y field 'zero' is not a number"),
    ("fractional-parent", ROOT_LINE + "2 3 10 0 0 1 1.5\n",
     r"cell\.swc:2: sample 2: the parent id 1\.5 is not an integer"),
    ("zero-radius", ROOT_LINE + "2 3 10 0 0 0 1\n",
     r"cell\.swc:2: sample 2: the radius 0\.0 must be a positive number of µm"),
    ("negative-radius", ROOT_LINE + "2 3 10 0 0 -0.5 1\n",
     r"cell\.swc:2: sample 2: the radius -0\.5 must be a positive number of µm"),
    ("nan-coordinate", ROOT_LINE + "2 3 10 nan 0 1 1\n",
     r"cell\.swc:2: sample 2: the y coordinate nan is not finite"),
    ("empty", "# nothing but a comment\n", r"cell\.swc: no SWC samples found"),
]  # fmt: skip

# valid files NEURON's Import3d cannot take as they are: renumbered before it sees them
OUT_OF_ORDER = {
    # a child line before its parent's
    "child-first": "3 3 20 0 0 1 2\n1 1 0 0 0 5 -1\n2 3 10 0 0 1 1\n4 3 20 5 0 1 2\n",
    # ids increase down the file but a parent's id is larger than its child's
    "parent-id-larger": "1 1 0 0 0 5 -1\n2 3 20 0 0 1 3\n3 3 10 0 0 1 1\n4 3 20 5 0 1 3\n",
    # in order, but ids so large that Import3d would allocate a table of 10**9 entries
    "huge-ids": "1 1 0 0 0 5 -1\n1000000000 3 10 0 0 1 1\n1000000001 3 20 0 0 1 1000000000\n",
}


def test_real_files_load_like_neurons_import3d_or_say_why(
    tmp_path, neuron_child, real_morphology_files, renumber_parent_first
):
    files = real_morphology_files
    assert len(files) >= 20 and any(path.name == ALLEN_FILE for path in files)
    jobs = []
    for index, path in enumerate(files):
        jobs.append({"id": f"load {index}", "kind": "load", "path": str(path)})
        reference = path
        if path.suffix.lower() == ".swc":
            reference = renumber_parent_first(path, tmp_path / f"{index}-{path.name}")
        jobs.append({"id": f"reference {index}", "kind": "reference", "path": str(reference)})
        if path.name == ALLEN_FILE:  # with a section present NEURON used to say "Arg out of range"
            jobs.append({"id": "section present", "kind": "load", "path": str(path),
                         "section_present": True})  # fmt: skip
    results = neuron_child(jobs)
    loaded = 0
    for index, path in enumerate(files):
        result = results[f"load {index}"]
        if not result["ok"]:  # a clear refusal is allowed: a ValueError naming the file
            assert result["error"] == "ValueError" and str(path) in result["message"], result
            continue
        reference = results[f"reference {index}"]
        assert reference["ok"], (path, reference)
        assert result["sections"] == reference["sections"], path
        assert result["nodes"] == result["neuron_rows"] == reference["nodes"], path
        assert result["length"] == pytest.approx(reference["length"], rel=1e-9), path
        loaded += 1
        if path.name == ALLEN_FILE:
            assert result == {**results["section present"]}
    assert loaded == len(files)  # today every one of these files loads


ASC_BROKEN = {
    "asc-garbage": "garbage that is not Neurolucida\n",
    "asc-truncated": "((CellBody)\n(0 0 0 1)\n",
    "asc-empty": "",
}


@pytest.fixture(scope="module")
def written_results(tmp_path_factory, neuron_child, renumber_parent_first) -> dict[str, dict]:
    """Every file written here, loaded in one batch of child processes.

    Keys: ``<case>`` and ``<case> with a section`` (loads), ``<case> reference``
    (NEURON's own Import3d on the renumbered copy of an :data:`OUT_OF_ORDER` file).
    """
    jobs = []

    def load(case: str, path, *, section_too: bool = True) -> None:
        jobs.append({"id": case, "kind": "load", "path": str(path)})
        if section_too:
            jobs.append({"id": f"{case} with a section", "kind": "load", "path": str(path),
                         "section_present": True})  # fmt: skip

    for case, text, _ in MALFORMED:
        path = tmp_path_factory.mktemp(case) / "cell.swc"
        path.write_text(text)
        load(case, path)
    for case, text in OUT_OF_ORDER.items():
        folder = tmp_path_factory.mktemp(case)
        path = folder / f"{case}.swc"
        path.write_text(text)
        load(case, path)
        reference = renumber_parent_first(path, folder / "reference.swc")
        jobs.append({"id": f"{case} reference", "kind": "reference", "path": str(reference)})
    for case, text in ASC_BROKEN.items():
        path = tmp_path_factory.mktemp(case) / "broken.asc"
        path.write_text(text)
        load(case, path, section_too=False)
    results = neuron_child(jobs)
    for job in jobs:
        results[job["id"]]["path"] = job["path"]
    return results


@pytest.mark.parametrize(("case", "message"), [(c, m) for c, _, m in MALFORMED],
                         ids=[c for c, _, _ in MALFORMED])  # fmt: skip
def test_malformed_swc_names_line_and_sample(written_results, case, message):
    for key in (case, f"{case} with a section"):
        result = written_results[key]
        assert not result["ok"] and result["error"] == "ValueError", result
        assert re.search(message, result["message"]), result["message"]
        assert result["message"].startswith(result["path"])


@pytest.mark.parametrize("case", sorted(OUT_OF_ORDER))
def test_out_of_order_swc_is_renumbered_for_import3d(written_results, case):
    loaded, reference = written_results[case], written_results[f"{case} reference"]
    assert loaded["ok"], loaded
    assert {**written_results[f"{case} with a section"], "path": None} == {**loaded, "path": None}
    assert (loaded["sections"], loaded["nodes"]) == (reference["sections"], reference["nodes"])
    assert loaded["nodes"] == loaded["neuron_rows"]
    assert loaded["length"] == pytest.approx(reference["length"], rel=1e-12)


@pytest.mark.parametrize("case", sorted(ASC_BROKEN))
def test_unreadable_asc_gives_a_value_error_naming_the_file(written_results, case):
    result = written_results[case]
    assert not result["ok"] and result["error"] == "ValueError", result
    assert result["path"] in result["message"]
