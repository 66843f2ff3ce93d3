/* Chooses each kernel's build for this CPU once, and calls it through a pointer. */
#include "CKernels.h"
#include "Kernels+Sets.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef void (*dw8_fn)(const float *, const intptr_t *, const intptr_t *, intptr_t, intptr_t, const float *,
                       const float *, float *);
typedef void (*strip_fn)(const float *, const intptr_t *, intptr_t, const float *, const float *, const float *,
                         const float *, const float *, intptr_t, float *, intptr_t, const float *, intptr_t);
typedef void (*interleave_fn)(const float *, intptr_t, intptr_t, float *);
typedef void (*deinterleave_fn)(const float *, intptr_t, float *, intptr_t, const float *);
typedef void (*pool_row_fn)(int, const float *, const intptr_t *, intptr_t, intptr_t, intptr_t, intptr_t, float,
                            float *, intptr_t);
typedef void (*gather_even_fn)(const float *, intptr_t, float *);
typedef void (*map_fn)(int, const float *, float *, intptr_t);
typedef void (*activate_fn)(int, float, float, float *, intptr_t, intptr_t, intptr_t);
typedef void (*fma_chain_fn)(float *, const float *, intptr_t, const float *, intptr_t, intptr_t);

/* -1 until chosen. The pointers are written before `active` (release) and read after it
   (acquire); choosing twice at once writes the same values. */
static _Atomic int active = -1;
static _Atomic(dw8_fn) dw8 = NULL;
static _Atomic(strip_fn) strip = NULL;
static _Atomic(interleave_fn) interleave = NULL;
static _Atomic(deinterleave_fn) deinterleave = NULL;
static _Atomic(pool_row_fn) pool_row = NULL;
static _Atomic(gather_even_fn) gather_even = NULL;
static _Atomic(map_fn) map = NULL;
static _Atomic(activate_fn) activate = NULL;
static _Atomic(fma_chain_fn) fma_chain = NULL;

int braid_isa_best(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return BRAID_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return BRAID_ISA_AVX2;
#endif
    return BRAID_ISA_PORTABLE;
}

const char *braid_isa_name(int isa) {
    switch (isa) {
    case BRAID_ISA_PORTABLE: return "portable";
    case BRAID_ISA_AVX2: return "avx2";
    case BRAID_ISA_AVX512: return "avx512";
    default: return NULL;
    }
}

int braid_isa_parse(const char *name) {
    if (name == NULL) return -1;
    if (strcmp(name, "auto") == 0) return braid_isa_best();
    for (int isa = BRAID_ISA_PORTABLE; isa <= BRAID_ISA_AVX512; isa++)
        if (strcmp(name, braid_isa_name(isa)) == 0) return isa;
    return -1;
}

int braid_isa_select(int isa) {
    const int best = braid_isa_best();
    if (isa < BRAID_ISA_PORTABLE || isa > best) isa = best;
    dw8_fn d = braid_dw8_accumulate_portable;
    strip_fn t = braid_smallk_strip_portable;
    interleave_fn i8 = braid_interleave8_portable;
    deinterleave_fn d8 = braid_deinterleave8_portable;
    pool_row_fn pr = braid_pool_row_portable;
    gather_even_fn ge = braid_gather_even_portable;
    map_fn m = braid_map_portable;
    activate_fn a = braid_activate_portable;
    fma_chain_fn f = braid_fma_chain_portable;
#if defined(__x86_64__)
    if (isa == BRAID_ISA_AVX2) {
        d = braid_dw8_accumulate_avx2; m = braid_map_avx2; f = braid_fma_chain_avx2;
        t = braid_smallk_strip_avx2; a = braid_activate_avx2;
        i8 = braid_interleave8_avx2; d8 = braid_deinterleave8_avx2; pr = braid_pool_row_avx2;
        ge = braid_gather_even_avx2;
    }
    if (isa == BRAID_ISA_AVX512) {
        d = braid_dw8_accumulate_avx512; m = braid_map_avx512; f = braid_fma_chain_avx512;
        t = braid_smallk_strip_avx512; a = braid_activate_avx512;
        i8 = braid_interleave8_avx512; d8 = braid_deinterleave8_avx512; pr = braid_pool_row_avx512;
        ge = braid_gather_even_avx512;
    }
#endif
    atomic_store_explicit(&dw8, d, memory_order_relaxed);
    atomic_store_explicit(&strip, t, memory_order_relaxed);
    atomic_store_explicit(&interleave, i8, memory_order_relaxed);
    atomic_store_explicit(&deinterleave, d8, memory_order_relaxed);
    atomic_store_explicit(&pool_row, pr, memory_order_relaxed);
    atomic_store_explicit(&gather_even, ge, memory_order_relaxed);
    atomic_store_explicit(&map, m, memory_order_relaxed);
    atomic_store_explicit(&activate, a, memory_order_relaxed);
    atomic_store_explicit(&fma_chain, f, memory_order_relaxed);
    atomic_store_explicit(&active, isa, memory_order_release);
    return isa;
}

int braid_isa_active(void) {
    int isa = atomic_load_explicit(&active, memory_order_acquire);
    if (isa < 0) {
        const char *wanted = getenv("BRAID_CPU");
        const int parsed = braid_isa_parse(wanted);
        isa = braid_isa_select(parsed < 0 ? braid_isa_best() : parsed);
    }
    return isa;
}

void braid_dw8_accumulate(const float *band, const intptr_t *pixel_offsets, const intptr_t *tap_offsets,
                          intptr_t pixels, intptr_t taps, const float *taps8, const float *bias8, float *out) {
    braid_isa_active();
    atomic_load_explicit(&dw8, memory_order_relaxed)(band, pixel_offsets, tap_offsets, pixels, taps, taps8, bias8,
                                                     out);
}

void braid_smallk_strip(const float *b, const intptr_t *row_offsets, intptr_t k, const float *w0, const float *w1,
                        const float *w2, const float *w3, const float *bias4, intptr_t cols, float *y, intptr_t ldy,
                        const float *residual, intptr_t valid) {
    braid_isa_active();
    atomic_load_explicit(&strip, memory_order_relaxed)(b, row_offsets, k, w0, w1, w2, w3, bias4, cols, y, ldy,
                                                       residual, valid);
}

void braid_interleave8(const float *src, intptr_t plane, intptr_t n, float *dst) {
    braid_isa_active();
    atomic_load_explicit(&interleave, memory_order_relaxed)(src, plane, n, dst);
}

void braid_deinterleave8(const float *src, intptr_t n, float *dst, intptr_t plane, const float *residual) {
    braid_isa_active();
    atomic_load_explicit(&deinterleave, memory_order_relaxed)(src, n, dst, plane, residual);
}

void braid_pool_row(int average, const float *base, const intptr_t *offsets, intptr_t nrows, intptr_t kw,
                    intptr_t tap, intptr_t stride, float divisor, float *out, intptr_t count) {
    braid_isa_active();
    atomic_load_explicit(&pool_row, memory_order_relaxed)(average, base, offsets, nrows, kw, tap, stride, divisor, out,
                                                          count);
}

void braid_gather_even(const float *src, intptr_t n, float *dst) {
    braid_isa_active();
    atomic_load_explicit(&gather_even, memory_order_relaxed)(src, n, dst);
}

void braid_activate(int kind, float a, float b, float *y, intptr_t rows, intptr_t cols, intptr_t stride) {
    braid_isa_active();
    atomic_load_explicit(&activate, memory_order_relaxed)(kind, a, b, y, rows, cols, stride);
}

void braid_map(int function, const float *x, float *y, intptr_t n) {
    braid_isa_active();
    atomic_load_explicit(&map, memory_order_relaxed)(function, x, y, n);
}

void braid_fma_chain(float *acc, const float *b, intptr_t ldb, const float *w, intptr_t k, intptr_t n) {
    braid_isa_active();
    atomic_load_explicit(&fma_chain, memory_order_relaxed)(acc, b, ldb, w, k, n);
}
