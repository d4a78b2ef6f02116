"""Files of other packages (models, morphologies), fetched from PyPI at test time.

Nothing here is vendored: :func:`package_file` downloads the package's release with pip
(``pip download --no-deps``, a source distribution or a wheel) into a cache folder,
unpacks it once, and returns a file inside it. The cache is ``$DHS_TEST_CACHE`` or
``~/.cache/dhs-tests``; a second call, or a second test run on the same machine, reads
the unpacked copy. A download that fails (no network) raises :class:`FetchError`, which
the fixtures turn into a failed test, never a silent skip: these are required inputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

__all__ = ["FetchError", "cache_root", "package_file", "package_root"]


class FetchError(RuntimeError):
    """A package could not be downloaded or unpacked."""


def cache_root() -> Path:
    """The folder that holds the downloaded and unpacked packages."""
    return Path(os.environ.get("DHS_TEST_CACHE", Path.home() / ".cache" / "dhs-tests"))


def package_root(name: str, version: str, *, kind: str = "sdist") -> Path:
    """The unpacked release of ``name==version`` from PyPI.

    Parameters
    ----------
    name, version : str
        The distribution, as pip spells it (``"bluepyopt"``, ``"1.14.26"``).
    kind : {"sdist", "wheel"}
        The source distribution (``--no-binary :all:``) or a wheel
        (``--only-binary :all:``; pure-Python wheels fit any machine).

    Returns
    -------
    Path
        The folder the archive unpacked into (for an sdist, its top folder
        ``name-version/``).
    """
    if kind not in ("sdist", "wheel"):
        raise ValueError(f"kind must be 'sdist' or 'wheel', got {kind!r}")
    target = cache_root() / f"{name}-{version}-{kind}"
    done = target / ".unpacked"
    if not done.exists():
        _download_and_unpack(name, version, kind, target)
        done.write_text("ok\n")
    if kind == "sdist":
        tops = [path for path in target.iterdir() if path.is_dir()]
        if len(tops) == 1:
            return tops[0]
    return target


def package_file(name: str, version: str, relative: str, *, kind: str = "sdist") -> Path:
    """One file (or folder) inside :func:`package_root`, checked to exist."""
    path = package_root(name, version, kind=kind) / relative
    if not path.exists():
        raise FetchError(f"{name}=={version} ({kind}) has no {relative}")
    return path


def _download_and_unpack(name: str, version: str, kind: str, target: Path) -> None:
    downloads = cache_root() / "downloads" / f"{name}-{version}-{kind}"
    if downloads.exists():
        shutil.rmtree(downloads)
    downloads.mkdir(parents=True)
    binary = ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary,
               "--dest", str(downloads), f"{name}=={version}"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    archives = sorted(downloads.iterdir())
    if completed.returncode != 0 or len(archives) != 1:
        raise FetchError(
            f"could not download {name}=={version} ({kind}) from PyPI: "
            f"{completed.stderr.strip()[-2000:] or 'no archive'}"
        )
    archive = archives[0]
    if target.exists():
        shutil.rmtree(target)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as bundle:
            bundle.extractall(partial, filter="data")
    elif archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(partial)
    else:
        raise FetchError(f"{archive.name}: not a .tar.gz, .whl or .zip archive")
    partial.rename(target)
