"""What machine and versions this is: for ``fastsample info`` and benchmark reports."""

from __future__ import annotations

import contextlib
import platform

__all__ = ["cpu_features", "cpu_name", "version_of"]

_INTERESTING = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                "avx512_bf16", "avx512bf16", "amx-tile", "neon", "asimd", "sve"]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features() -> str:
    """``"<llvm cpu name>; avx avx2 fma ..."``: the SIMD features numba can use."""
    name = platform.processor() or platform.machine()
    feats: list[str] = []
    try:
        import llvmlite.binding as llvm

        name = llvm.get_host_cpu_name()
        on = {k.replace("_", "") for k, v in llvm.get_host_cpu_features().items() if v}
        feats = [f for f in _INTERESTING if f.replace("_", "") in on]
    except Exception:  # noqa: BLE001 - no llvmlite, or an odd host: read /proc instead
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    feats = [f for f in _INTERESTING if f in flags]
                    break
    return f"{name}; {' '.join(feats) if feats else 'no SIMD features detected'}"


def version_of(mod: str) -> str:
    """The package's ``__version__``, or ``"not installed (...)"``."""
    try:
        m = __import__(mod)
    except Exception as e:  # noqa: BLE001 - a broken install is "not installed" here
        return f"not installed ({type(e).__name__})"
    return str(getattr(m, "__version__", "installed"))
