"""Reading logits from ``.npy`` / ``.npz`` files for ``fastsample sample``."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["LogitsFileError", "load_logits"]


class LogitsFileError(ValueError):
    """The file is missing, unreadable, or not the array expected."""


def load_logits(path: str, key: str | None) -> np.ndarray:
    """The array in a ``.npy`` file, or the chosen one of a ``.npz`` (no pickles).

    Raises ``LogitsFileError`` (a ``ValueError``) with a one-line message naming the
    file and what is wrong with it.
    """
    if not os.path.exists(path):
        raise LogitsFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise LogitsFileError(f"{path}: is a directory, expected a .npy or .npz file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise LogitsFileError(f"{path}: cannot open ({e.strerror or e})") from None
    if not magic.startswith((b"\x93NUMPY", b"PK\x03\x04")):
        raise LogitsFileError(f"{path}: not a .npy or .npz file" + (" (it is empty)" if not magic else ""))
    try:
        obj = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - np.load raises many kinds (EOFError, BadZipFile...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LogitsFileError(f"{path}: cannot read as .npy/.npz ({msg})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                if len(names) == 1:
                    key = names[0]
                elif "logits" in names:
                    key = "logits"
                else:
                    raise LogitsFileError(f"{path}: holds {len(names)} arrays "
                                          f"({', '.join(names) or 'none'}); choose one with --key")
            if key not in names:
                raise LogitsFileError(f"{path}: no array named {key!r} (has: {', '.join(names) or 'none'})")
            try:
                arr = obj[key]
            except Exception as e:  # noqa: BLE001 - a corrupt member: any zip/format error
                raise LogitsFileError(f"{path}: cannot read array {key!r} ({e})") from None
    else:
        if key is not None:
            raise LogitsFileError(f"--key is for .npz files; {path} holds a single array")
        arr = obj
    return np.asarray(arr)
