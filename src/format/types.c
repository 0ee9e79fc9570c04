/* types.c - sizes and names of the tensor element types herd reads and writes
 * (GGUF's ggml_type numbering). Knows block geometry only: how the quantized
 * blocks are laid out inside is the kernels' business (src/kernels/). */
#include "format/format.h"

typedef struct {
    int type;
    const char *name;
    int block_size;     /* elements per block */
    size_t block_bytes; /* bytes per block */
} type_info;

static const type_info type_table[] = {
    { HERD_F32, "F32", 1, 4 },
    { HERD_F16, "F16", 1, 2 },
    { HERD_BF16, "BF16", 1, 2 },
    { HERD_Q8_0, "Q8_0", 32, 34 },   /* f16 scale + 32 x int8 */
    { HERD_Q4_0, "Q4_0", 32, 18 },   /* f16 scale + 16 bytes of nibbles */
    { HERD_Q4_K, "Q4_K", 256, 144 }, /* 2 x f16 + 12 B scales + 128 B nibbles */
    { HERD_Q5_K, "Q5_K", 256, 176 }, /* 2 x f16 + 12 B scales + 32 B high bits + 128 B */
    { HERD_Q6_K, "Q6_K", 256, 210 }, /* 128 B low + 64 B high + 16 B scales + f16 */
};

static const type_info *type_find(int type) {
    for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
        if (type_table[i].type == type) return &type_table[i];
    return NULL;
}

const char *herd_type_name(int type) {
    const type_info *t = type_find(type);
    return t ? t->name : "?";
}

int herd_type_block_size(int type) {
    const type_info *t = type_find(type);
    return t ? t->block_size : 0;
}

size_t herd_type_block_bytes(int type) {
    const type_info *t = type_find(type);
    return t ? t->block_bytes : 0;
}

size_t herd_type_row_size(int type, int64_t n) {
    const type_info *t = type_find(type);
    if (!t || n < 0 || n % t->block_size != 0) return 0;
    size_t bytes;
    if (!herd_mul_size((size_t)(n / t->block_size), t->block_bytes, &bytes)) return 0;
    return bytes;
}
