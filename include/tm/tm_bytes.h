/*
 * tm_bytes.h - little-endian loads and stores without unaligned dereferences,
 * for file formats and wire frames. Any thread.
 *
 *     uint64_t n = tm_load_u64_le(p);   // p may be unaligned
 */
#ifndef TM_BYTES_H
#define TM_BYTES_H

#include <stdint.h>
#include <string.h>

static inline uint16_t tm_load_u16_le(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] | (b[1] << 8));
}

static inline uint32_t tm_load_u32_le(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static inline uint64_t tm_load_u64_le(const void *p) {
    const uint8_t *b = (const uint8_t *)p;
    return (uint64_t)tm_load_u32_le(b) | ((uint64_t)tm_load_u32_le(b + 4) << 32);
}

static inline void tm_store_u16_le(void *p, uint16_t v) {
    uint8_t *b = (uint8_t *)p;
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
}

static inline void tm_store_u32_le(void *p, uint32_t v) {
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static inline void tm_store_u64_le(void *p, uint64_t v) {
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static inline float tm_load_f32_le(const void *p) {
    uint32_t u = tm_load_u32_le(p);
    float    f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double tm_load_f64_le(const void *p) {
    uint64_t u = tm_load_u64_le(p);
    double   d;
    memcpy(&d, &u, sizeof d);
    return d;
}

#endif /* TM_BYTES_H */
