"""The backend registry.

A backend is a module of functions named like those of ``fastsample.reference``
(``docs/internals.md``). Each backend has a loader that imports its module or raises
``BackendUnavailable`` with the reason; a later backend plugs in by registering a
loader, without touching the public API.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from numpy import ndarray as _NDARRAY

__all__ = [
    "BackendError", "BackendUnavailable", "BackendStatus", "register", "backends",
    "load", "resolve", "is_gpu_array", "NAMES",
]

NAMES = ("numpy", "numba", "c", "cuda")
_AUTO_CPU_ORDER = ("c", "numba")


class BackendError(ValueError):
    """A backend that is unavailable, unknown, or lacks a stage or operation."""


class BackendUnavailable(Exception):
    """Raised by a loader; its message is the reason shown by ``fs.backends()``."""


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can be used here and, if not, why.

    ``bool(status)`` is ``status.available``.
    """

    name: str
    available: bool
    reason: str | None = None

    def __bool__(self):
        return self.available


def _load_numpy():
    from . import reference

    return reference


def _load_module(module, what):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{what} ({module} not importable: {exc})") from None


def _load_numba():
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"numba is not installed: {exc}") from None
    return _load_module("fastsample.kernels.cpu.ops", "the numba CPU kernels failed to import")


def _load_c():
    try:
        return importlib.import_module("fastsample.c_backend")
    except ImportError as exc:
        raise BackendUnavailable(
            "the C extension fastsample._ckernels was not built (no working C compiler at "
            "install time?); install a C compiler and reinstall with `pip install -e .` "
            "(FASTSAMPLE_REQUIRE_C=1 makes a failed build an error) "
            f"[{type(exc).__name__}: {exc}]"
        ) from None


def _load_cuda():
    """numba-cuda and a GPU, or the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba import cuda
    except ImportError as exc:
        raise BackendUnavailable(
            f"numba.cuda is not importable ({exc}); install the [cuda] extra (numba-cuda)"
        ) from None
    from numba import config

    if not getattr(config, "ENABLE_CUDASIM", False):
        try:
            available = cuda.is_available()
        except Exception as exc:  # noqa: BLE001 (a broken driver install raises, any type)
            available = False
            why = f": {exc}"
        else:
            why = ""
        if not available:
            hint = "" if importlib.util.find_spec("numba_cuda") else \
                " (numba-cuda is not installed: pip install 'fastsample[cuda]')"
            raise BackendUnavailable(
                f"no CUDA GPU is usable here (numba.cuda.is_available() is False{why}){hint}; "
                "set NUMBA_ENABLE_CUDASIM=1 before importing numba to run the kernels in "
                "the CUDA simulator"
            )
    return _load_module("fastsample.kernels.cuda.ops", "the CUDA kernels failed to import")


_LOADERS = {"numpy": _load_numpy, "numba": _load_numba, "c": _load_c, "cuda": _load_cuda}
_CACHE: dict = {}
_AUTO_CPU: list = []  # resolved once: availability cannot change after loading


def register(name, loader):
    """Register (or replace) the loader of backend ``name``; clears its cached state."""
    _LOADERS[name] = loader
    _CACHE.pop(name, None)
    _AUTO_CPU.clear()


def _try_load(name):
    if name not in _CACHE:
        try:
            _CACHE[name] = (_LOADERS[name](), None)
        except BackendUnavailable as exc:
            _CACHE[name] = (None, str(exc))
    return _CACHE[name]


def backends():
    """Every known backend and whether it is available here.

    Returns
    -------
    dict of str to BackendStatus
        Keys ``"numpy"``, ``"numba"``, ``"c"``, ``"cuda"``; an unavailable backend
        carries the reason in ``.reason``.
    """
    out = {}
    for name in _LOADERS:
        ops, reason = _try_load(name)
        out[name] = BackendStatus(name, ops is not None, reason)
    return out


def load(name):
    """The ops module of an available backend, or ``BackendError`` saying why not."""
    if name not in _LOADERS:
        raise BackendError(f"unknown backend {name!r}; expected one of {sorted(_LOADERS)} or 'auto'")
    ops, reason = _try_load(name)
    if ops is None:
        raise BackendError(f"backend {name!r} is unavailable: {reason}")
    return ops


def is_gpu_array(x):
    """Arrays in GPU memory: ``__cuda_array_interface__`` (CuPy, torch.cuda, numba
    device arrays), or a device array of numba's CUDA simulator (which lacks it)."""
    if type(x) is _NDARRAY:  # the common case, answered without attribute lookups
        return False
    return hasattr(x, "__cuda_array_interface__") or \
        type(x).__module__.startswith("numba.cuda.simulator")


def resolve(backend, x=None):
    """Names of the backends to use, in order of preference.

    An explicit backend gives a one-element list. ``"auto"`` gives cuda for GPU
    arrays, else the available compiled CPU backends (c, then numba), so that a stage
    missing from C runs on numba; the numpy reference only when neither is there
    (never as a silent slow path behind a fast backend).
    """
    if backend != "auto":
        load(backend)
        return [backend]
    if x is not None and is_gpu_array(x):
        load("cuda")
        return ["cuda"]
    if not _AUTO_CPU:
        fast = [name for name in _AUTO_CPU_ORDER if _try_load(name)[0] is not None]
        _AUTO_CPU.extend(fast or ["numpy"])
    return list(_AUTO_CPU)


def row_check(names):
    """The backend's own ``invalid_rows`` (one fast pass) if it has one, else numpy's."""
    fn = getattr(load(names[0]), "invalid_rows", None)
    if fn is None:
        from .validation import invalid_rows as fn
    return fn


def op_for(names, op, stage):
    """The first backend function named ``op`` among ``names``; ``BackendError`` if none."""
    for name in names:
        fn = getattr(load(name), op, None)
        if fn is not None:
            return fn
    raise BackendError(f"{stage} has no kernel on backend {names[0]!r}")
