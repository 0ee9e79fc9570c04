/* core.h - status codes, error messages, mapped files, small helpers shared by
 * every module of the library. Internal: not part of the public header.
 *
 * Errors are values: every fallible function returns herd_status and, on failure,
 * leaves one line in a herd_error saying what failed, where, expected vs got, and a
 * hint. Nothing here exits or asserts on input.
 */
#ifndef HERD_CORE_H
#define HERD_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "herd.h"

/* Sets err->msg from a printf format (when err is non-NULL) and returns st. */
herd_status herd_errf(herd_error *err, herd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A read-only whole-file mapping. data is NULL for an empty file. */
typedef struct {
    const uint8_t *data;
    size_t size;
    char *path; /* owned copy, for messages */
} herd_mapped_file;

herd_status herd_map_file(herd_mapped_file *f, const char *path, herd_error *err);
void herd_unmap_file(herd_mapped_file *f);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer. */
herd_status herd_read_file(const char *path, char **out, size_t *out_len, herd_error *err);
int herd_file_exists(const char *path);
/* 1 when s ends with suffix. */
int herd_ends_with(const char *s, const char *suffix);
/* "dir/name", malloc'd (NULL when out of memory). */
char *herd_path_join(const char *dir, const char *name);
/* mkdir -p: creates dir and its missing parents (mode 0755); 0, or -1 with errno. */
int herd_make_dirs(const char *dir);

/* Overflow-checked size arithmetic: return 0 on overflow. */
static inline int herd_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int herd_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* bf16 / f16 <-> f32 scalar conversions (round-to-nearest-even on the way down). */
static inline float herd_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t herd_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* NaN stays NaN */
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
float herd_f16_to_f32(uint16_t h);
uint16_t herd_f32_to_f16(float f);

/* Deterministic RNG (splitmix64 seeding an xoshiro256** state). */
typedef struct { uint64_t s[4]; } herd_rng;
void herd_rng_seed(herd_rng *r, uint64_t seed);
uint64_t herd_rng_next(herd_rng *r);
double herd_rng_uniform(herd_rng *r);  /* [0, 1) with 53 random bits */
double herd_rng_normal(herd_rng *r);   /* N(0, 1), Box-Muller */

#endif
