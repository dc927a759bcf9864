/* Philox4x32-10 (Random123) and the uniform of docs/spec.md §5, shared by every C kernel
 * that draws (the draw: stream 0; XTC's roll: stream 1). Header-only, no state. */
#ifndef FS_PHILOX_H
#define FS_PHILOX_H

#include <stdint.h>

#define FS_STREAM_DRAW 0u
#define FS_STREAM_XTC 1u

static inline void fs_philox4x32_10(const uint32_t counter[4], const uint32_t key[2],
                                    uint32_t out[4]) {
    uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* u in (0, 1): words 0 and 1 as a 64-bit integer x; u = ((x >> 12) + 0.5) * 2^-52. */
static inline double fs_uniform(uint64_t seed, uint64_t position, uint32_t token,
                                uint32_t stream) {
    const uint32_t counter[4] = {(uint32_t)position, (uint32_t)(position >> 32), token, stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t w[4];
    fs_philox4x32_10(counter, key, w);
    uint64_t x = (uint64_t)w[0] | ((uint64_t)w[1] << 32);
    return ((double)(x >> 12) + 0.5) * 0x1.0p-52;
}

#endif
