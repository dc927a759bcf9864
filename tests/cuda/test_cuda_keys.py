"""The order-preserving float32 keys behind every radix select."""

import numpy as np
from fastsample.kernels.cuda.target import NEG_INF_KEY, f32_key, key_f32
from numba import cuda


@cuda.jit
def _keys(x, keys, back):
    i = cuda.grid(1)
    if i < x.shape[0]:
        k = f32_key(x[i])
        keys[i] = k
        back[i] = key_f32(k)


def test_keys_preserve_order_and_fold_signed_zero():
    tiny = np.float32(1e-45)
    x = np.array([-np.inf, -3.4e38, -1.5, -tiny, -0.0, 0.0, tiny, 1.0, 2.5, 3.4e38, np.inf],
                 np.float32)
    keys = cuda.device_array(x.size, np.uint32)
    back = cuda.device_array(x.size, np.float32)
    _keys[1, 16](cuda.to_device(x), keys, back)
    k = keys.copy_to_host().astype(np.int64)
    assert k[0] == NEG_INF_KEY
    assert k[4] == k[5]                          # -0.0 and +0.0 share a key
    d = np.diff(k)
    assert (np.delete(d, 4) > 0).all()           # strictly increasing otherwise
    b = back.copy_to_host()
    np.testing.assert_array_equal(b, x)           # inverse (a folded -0.0 comes back +0.0)
    assert not np.signbit(b[4])
