"""Host arrays of other libraries in, the caller's array type out.

The public API computes on numpy arrays. ``to_host`` turns a caller's host array into
a numpy array (a zero-copy view where numpy has the dtype) and gives back ``wrap``,
which turns fastsample's numpy results into the caller's type:

- torch CPU tensors (any float dtype, bfloat16 included; strided; ``requires_grad``):
  values come back as float32 tensors, token ids as int64 tensors (torch's index
  dtype, as from ``torch.multinomial`` / ``torch.topk``), a 1-D ``sample`` as an int;
- other host arrays through DLPack (``__dlpack__`` on the CPU); results come back
  through the array's ``__array_namespace__`` when it has one, else as numpy.

Objects with ``__cuda_array_interface__`` (torch.cuda tensors, CuPy arrays) pass
through untouched: they belong to the cuda backend, and copying them here would be
a hidden host round trip. torch is never imported by this module: a tensor can only
exist if the caller imported torch already.
"""

from __future__ import annotations

import functools
import inspect
import sys

import numpy as np

from .registry import is_gpu_array

__all__ = ["host_io", "plain", "to_host"]

_KDLCPU = 1  # DLPack device type of host memory

# Argument types that never need converting: the per-token hot path only pays for
# one set lookup per argument.
_PLAIN = frozenset({
    np.ndarray, int, float, bool, str, type(None), list, tuple, dict,
    np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64,
})


def _same(result):
    return result


def to_host(x):
    """A caller's array as a numpy array, and the function that converts results back.

    Parameters
    ----------
    x : object
        A torch CPU tensor, a host array with ``__dlpack__``, or anything else
        (numpy arrays, lists and GPU arrays are returned as they are).

    Returns
    -------
    host : numpy.ndarray or object
        The array to compute on. Never a copy for numpy-representable dtypes;
        bfloat16 is widened (exactly) into a new float32 array.
    wrap : callable
        Maps a result (array, tuple of arrays, int or None) to the caller's type.

    Raises
    ------
    TypeError
        For a torch tensor on a device other than the CPU or CUDA (say ``meta`` or
        ``mps``): fastsample will not move it behind the caller's back.
    """
    if type(x) is np.ndarray or isinstance(x, (np.ndarray, np.generic)):
        return x, _same
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return _torch_to_host(x, torch)
    if is_gpu_array(x):  # simulator device arrays too: they would pass as DLPack host arrays
        return x, _same
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        if int(x.__dlpack_device__()[0]) != _KDLCPU:
            return x, _same  # a device array: the device route decides what to do
        try:
            host = np.from_dlpack(x)
        except (TypeError, ValueError, BufferError, RuntimeError) as exc:
            raise TypeError(f"cannot read {type(x).__name__} through DLPack: {exc}") from None
        return host, _namespace_wrap(x)
    return x, _same


def plain(value):
    """A parameter, seed, position or history given as a tensor, as numpy; else as is."""
    if type(value) in _PLAIN:
        return value
    return to_host(value)[0]


def _torch_to_host(x, torch):
    if x.device.type == "cuda":
        # The cuda backend's; detached (no copy) so __cuda_array_interface__ works.
        return (x.detach() if x.requires_grad else x), _same
    if x.device.type != "cpu":
        raise TypeError(
            f"a torch tensor on device '{x.device}' cannot be sampled: fastsample takes "
            "CPU or CUDA tensors (move it with .cpu(), an explicit copy)"
        )
    t = x.detach()
    if t.dtype == torch.bfloat16:
        host = t.float().numpy()  # numpy has no bfloat16; the widening is exact
    else:
        host = t.resolve_conj().resolve_neg().numpy()
    return host, functools.partial(_torch_wrap, torch=torch, source=host)


def _rewrap(result, fn):
    """A tuple of results converted by ``fn``, keeping a named tuple's type (fs.Sampled)."""
    parts = [fn(r) for r in result]
    return type(result)(*parts) if hasattr(result, "_fields") else tuple(parts)


def _torch_wrap(result, torch, source):
    if isinstance(result, tuple):
        return _rewrap(result, lambda r: _torch_wrap(r, torch, source))
    if not isinstance(result, np.ndarray):
        return result
    if result.dtype.kind in "iu":
        result = result.astype(np.int64)
    elif not result.flags.writeable or np.may_share_memory(result, source):
        # e.g. process() through an empty chain returns its input: never hand the
        # caller a tensor that aliases their input.
        result = result.copy()
    return torch.from_numpy(result)


def _namespace_wrap(x):
    namespace = getattr(x, "__array_namespace__", None)
    if namespace is None:
        return _same
    xp = namespace()

    def wrap(result):
        if isinstance(result, tuple):
            return _rewrap(result, wrap)
        return xp.asarray(result) if isinstance(result, np.ndarray) else result

    return wrap


def host_io(primary):
    """Decorate an API function so that it takes host tensors and returns the same type.

    Every argument that is not a plain Python/numpy value goes through ``to_host``;
    the result is converted back with the ``wrap`` of the argument named ``primary``
    (the logits, or the history of ``dry_penalty``), so numpy logits with a torch
    parameter still give numpy results.
    """

    def decorate(fn):
        names = list(inspect.signature(fn).parameters)
        index = names.index(primary)
        skip = 1 if names[0] == "self" else 0

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _PLAIN.issuperset(map(type, args[skip:] if skip else args)) and \
                    _PLAIN.issuperset(map(type, kwargs.values())):
                return fn(*args, **kwargs)  # nothing to convert
            wrap = _same
            args = list(args)
            for i in range(skip, len(args)):
                if type(args[i]) not in _PLAIN:
                    args[i], w = to_host(args[i])
                    if i == index:
                        wrap = w
            for key, v in kwargs.items():
                if type(v) not in _PLAIN:
                    kwargs[key], w = to_host(v)
                    if key == primary:
                        wrap = w
            return wrap(fn(*args, **kwargs))

        return wrapper

    return decorate
