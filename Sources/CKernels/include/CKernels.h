#ifndef BRAID_CKERNELS_H
#define BRAID_CKERNELS_H
/*
 * Braid's hot inner loops, compiled once per instruction set in this one C target and chosen
 * at run time, so the package builds with no CPU-specific flag and runs on any CPU of its
 * architecture: AVX-512 or AVX2+FMA where the CPU has them, a portable build of the same loops
 * otherwise (SSE2 on x86-64, NEON on arm64, which every arm64 CPU has).
 */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The instruction sets the kernels are built for. */
enum {
    BRAID_ISA_PORTABLE = 0,
    BRAID_ISA_AVX2 = 1,     /* AVX2 and FMA */
    BRAID_ISA_AVX512 = 2,   /* AVX-512 F, VL (and AVX2, FMA) */
};

/* The best instruction set this CPU (and its operating system) supports. */
int braid_isa_best(void);
/* The instruction set the kernels use now. On the first call of any kernel it is chosen from
   the environment variable BRAID_CPU (portable, avx2, avx512 or auto) and the CPU: a named
   set the CPU lacks falls back to the best it has. */
int braid_isa_active(void);
/* Uses `isa` (or the best set below it the CPU has) from now on; returns the set in use. */
int braid_isa_select(int isa);
/* "portable", "avx2" or "avx512"; NULL for any other value. */
const char *braid_isa_name(int isa);
/* The value of `name` as an instruction set (auto is the best there is), or -1. */
int braid_isa_parse(const char *name);

/*
 * Depthwise convolution, eight channels and eight output pixels at a time. `band` is an
 * interleaved `[row, column, 8]` band of the padded input; output pixel `p` reads, for tap
 * `t`, the eight floats at byte `pixel_offsets[p] + tap_offsets[t]` of `band` and multiplies
 * them by `taps8[t * 8 ...]`. Writes `out[p * 8 + lane] = bias8[lane] + sum over taps` for
 * `p < pixels`.
 */
void braid_dw8_accumulate(const float *band, const intptr_t *pixel_offsets, const intptr_t *tap_offsets,
                          intptr_t pixels, intptr_t taps, const float *taps8, const float *bias8, float *out);

/*
 * Rows `valid` (1 to 4) of a 4-row strip of the same product over `cols` >= 16 columns: for row
 * `r` and column `c`, `y[r * ldy + c] = bias4[r] + sum_j w[r][j] * b[row_offsets[j] + c]
 * (+ residual[r * ldy + c] when `residual` is not NULL)`.
 */
void braid_smallk_strip(const float *b, const intptr_t *row_offsets, intptr_t k,
                        const float *w0, const float *w1, const float *w2, const float *w3,
                        const float *bias4, intptr_t cols, float *y, intptr_t ldy, const float *residual,
                        intptr_t valid);

/* Eight planes `plane` floats apart, interleaved: `dst[c * 8 + l] = src[l * plane + c]` for
   `c < n`, `l < 8`. */
void braid_interleave8(const float *src, intptr_t plane, intptr_t n, float *dst);

/* The inverse, with an optional residual added on the way:
   `dst[l * plane + c] = src[c * 8 + l] (+ residual[l * plane + c])` for `c < n`, `l < 8`. */
void braid_deinterleave8(const float *src, intptr_t n, float *dst, intptr_t plane, const float *residual);

/*
 * Output columns `j < count` (count >= 8) of one row of max pooling (`average` 0) or average
 * pooling over window rows at `base + offsets[r]` (`r < nrows`) and `kw` taps `tap` floats
 * apart: `out[j]` = the maximum, or the sum divided by `divisor` (0 when `nrows` is 0), of
 * `base[offsets[r] + j * stride + kx * tap]`, summed in the order r, kx. `stride` is 1 or 2;
 * with 2 no float past the last tap is read. A NaN tap is skipped by the maximum.
 */
void braid_pool_row(int average, const float *base, const intptr_t *offsets, intptr_t nrows, intptr_t kw,
                    intptr_t tap, intptr_t stride, float divisor, float *out, intptr_t count);

/* Every second float: `dst[i] = src[2 * i]` for `i < n`, reading no float past `src[2 * (n - 1)]`. */
void braid_gather_even(const float *src, intptr_t n, float *dst);

/* The activations `braid_activate` applies, with its parameters `a` and `b`. */
enum {
    BRAID_ACT_RELU = 0,
    BRAID_ACT_LEAKY_RELU = 1,    /* a: the slope below 0 */
    BRAID_ACT_CLIP = 2,          /* [a, b] */
    BRAID_ACT_HARD_SIGMOID = 3,  /* min(1, max(0, a * x + b)) */
    BRAID_ACT_HARD_SWISH = 4,    /* x * min(1, max(0, x / 6 + 1/2)) */
    BRAID_ACT_SIGMOID = 5,
    BRAID_ACT_SILU = 6,
};

/* `rows` runs of `cols` floats, `stride` apart from `y`, replaced in place by the activation.
   NaN stays NaN. */
void braid_activate(int kind, float a, float b, float *y, intptr_t rows, intptr_t cols, intptr_t stride);

/* The functions `braid_map` applies. */
enum {
    BRAID_MAP_EXP = 0,
    BRAID_MAP_SIGMOID = 1,
    BRAID_MAP_TANH = 2,
    BRAID_MAP_SILU = 3,     /* x * sigmoid(x) */
    BRAID_MAP_ERF = 4,
    BRAID_MAP_GELU = 5,     /* x (1 + erf(x / sqrt 2)) / 2 */
};

/* `y[i] = function(x[i])` for `i < n`; `x` and `y` may be the same array. */
void braid_map(int function, const float *x, float *y, intptr_t n);

/*
 * Chains of fused multiply-adds, in order: `acc[j] = fma(w[t], b[t * ldb + j], acc[j])` for
 * `t = 0 ..< k`, for each `j < n`. Every set rounds once per step (the portable x86-64 build
 * through fmaf), so all give the same floats: the order onnxruntime's CPU GEMM sums in.
 */
void braid_fma_chain(float *acc, const float *b, intptr_t ldb, const float *w, intptr_t k, intptr_t n);

#ifdef __cplusplus
}
#endif
#endif
