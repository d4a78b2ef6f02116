"""Generated mechanism modules: written to a cache folder, imported, and built for the
CPU and for CUDA from the same function bodies.

A translation's module is written once to ``<cache>/mechanisms/<name>_<digest>.py``
(the digest covers the ``.mod`` text, :data:`GENERATOR_VERSION` and :func:`runtime_digest`),
so Numba can cache
its compiled code beside it (``cache=True`` needs a real file). The CPU build is the
module itself: its functions are ``numba.njit`` dispatchers
(:func:`dhs.engine.nmodl.runtime.jit`). The CUDA build re-creates each function from
the same code object with globals that name the device versions of the runtime and
of the module's other functions (:func:`cuda_functions`): one body, two builds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

__all__ = [
    "cache_root",
    "cuda_functions",
    "device_jit",
    "load_module",
    "module_path",
    "runtime_digest",
]

#: The modules whose functions generated code calls. Numba's cache checks only the
#: generated file itself, so their text is part of every cache key.
_RUNTIME_MODULES = (
    "dhs/engine/nmodl/runtime.py",
    "dhs/engine/nmodl/fast_exp.py",
    "dhs/engine/nmodl/runtime_cuda.py",
    "dhs/engine/kernel_runtime.py",
    "dhs/solvers/cuda.py",
)


def cache_root() -> Path:
    """The folder of generated code: ``$DHS_CACHE`` or ``~/.cache/dhs``."""
    root = os.environ.get("DHS_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "dhs"


@functools.cache
def runtime_digest() -> str:
    """SHA-256 of the runtime modules' text and of the ``exp`` in use: a change to either
    must not reuse machine code compiled against the old ones."""
    from .runtime import EXP_IMPLEMENTATION

    package_root = Path(__file__).resolve().parents[3]
    digest = hashlib.sha256(EXP_IMPLEMENTATION.encode())
    for relative in _RUNTIME_MODULES:
        digest.update((package_root / relative).read_bytes())
    return digest.hexdigest()


def module_path(name: str, digest: str, kind: str = "mechanisms") -> Path:
    return cache_root() / kind / f"{_safe(name)}_{digest[:20]}.py"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a reader
    never sees half a file (two processes may generate the same module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_module(name: str, digest: str, source: str, kind: str = "mechanisms") -> types.ModuleType:
    """Import the generated module (writing it first when the cache lacks it)."""
    path = module_path(name, digest, kind)
    module_name = f"dhs_generated.{kind}.{path.stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    write_atomically(path, source)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def device_jit(function):
    """A device function that NVVM inlines into its caller (``forceinline``). Numba's
    own IR inlining (``inline="always"``) is not used: it refuses calls of more than 30
    arguments, which Python compiles as ``f(*args)``. The simulator takes no
    ``forceinline``."""
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return cuda.jit(device=True)(function)
    return cuda.jit(device=True, forceinline=True)(function)


def _is_dispatcher(value) -> bool:
    return hasattr(value, "py_func") and hasattr(value, "targetoptions")


def cuda_functions(module: types.ModuleType, runtime: dict) -> dict[str, object]:
    """Device builds of every function of a generated module.

    Each is :func:`device_jit` of a function with the CPU
    function's code object, whose globals resolve the runtime names to ``runtime``
    (device functions) and the module's own functions to their device builds.
    """
    namespace = dict(module.__dict__)
    namespace.update(runtime)
    built = {}
    for name, value in module.__dict__.items():
        if not _is_dispatcher(value) or value.py_func.__module__ != module.__name__:
            continue
        original = value.py_func
        function = types.FunctionType(
            original.__code__,
            namespace,
            original.__name__,
            original.__defaults__,
            original.__closure__,
        )
        built[name] = device_jit(function)
    namespace.update(built)
    return built
