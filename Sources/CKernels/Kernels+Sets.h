/* Each instruction set's build of the kernels (Kernels+Body.h), as Dispatch.c calls them. */
#ifndef BRAID_KERNELS_SETS_H
#define BRAID_KERNELS_SETS_H
#include <stdint.h>

#define BRAID_KERNEL_SET(set)                                                                                   \
    void braid_dw8_accumulate_##set(const float *band, const intptr_t *pixel_offsets,                           \
                                    const intptr_t *tap_offsets, intptr_t pixels, intptr_t taps,                \
                                    const float *taps8, const float *bias8, float *out);                        \
    void braid_smallk_strip_##set(const float *b, const intptr_t *row_offsets, intptr_t k, const float *w0,     \
                                  const float *w1, const float *w2, const float *w3, const float *bias4,        \
                                  intptr_t cols, float *y, intptr_t ldy, const float *residual,                 \
                                  intptr_t valid);                                                              \
    void braid_interleave8_##set(const float *src, intptr_t plane, intptr_t n, float *dst);                     \
    void braid_deinterleave8_##set(const float *src, intptr_t n, float *dst, intptr_t plane,                    \
                                   const float *residual);                                                      \
    void braid_pool_row_##set(int average, const float *base, const intptr_t *offsets, intptr_t nrows,          \
                              intptr_t kw, intptr_t tap, intptr_t stride, float divisor, float *out,            \
                              intptr_t count);                                                                  \
    void braid_gather_even_##set(const float *src, intptr_t n, float *dst);                                     \
    void braid_map_##set(int function, const float *x, float *y, intptr_t n);                                   \
    void braid_activate_##set(int kind, float a, float b, float *y, intptr_t rows, intptr_t cols,               \
                              intptr_t stride);                                                                 \
    void braid_fma_chain_##set(float *acc, const float *b, intptr_t ldb, const float *w, intptr_t k, intptr_t n);

BRAID_KERNEL_SET(portable)
#if defined(__x86_64__)
BRAID_KERNEL_SET(avx2)
BRAID_KERNEL_SET(avx512)
#endif
#endif
