/*
 * The kernels' bodies, included once per instruction set by the Kernels+*.c files with
 *   SUFFIX(name)   the instruction set's name for a function (name_avx2, ...)
 *   MADD(a, b, c)  a + b * c on vectors (fused where the set has FMA)
 * set. Vectors are clang/GCC vector types; each set's compilation lowers them to its
 * registers (two SSE or NEON registers per eight floats in the portable build).
 */
#include <string.h>

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef float v16f __attribute__((vector_size(64), aligned(4)));

/* Unaligned loads as expressions (macros: a function returning a vector would change the
   calling convention with the instruction set). */
#define LOAD8(p) ({ v8f v_; memcpy(&v_, (p), sizeof v_); v_; })
#define LOAD16(p) ({ v16f v_; memcpy(&v_, (p), sizeof v_); v_; })

void SUFFIX(braid_dw8_accumulate)(const float *band, const intptr_t *po, const intptr_t *to, intptr_t pixels,
                                  intptr_t taps, const float *taps8, const float *bias8, float *out) {
    const char *base = (const char *)band, *w = (const char *)taps8;
    const v8f bias = LOAD8((const char *)bias8);
    intptr_t p = 0;
    for (; p + 8 <= pixels; p += 8) {
        const char *q0 = base + po[p], *q1 = base + po[p + 1], *q2 = base + po[p + 2], *q3 = base + po[p + 3];
        const char *q4 = base + po[p + 4], *q5 = base + po[p + 5], *q6 = base + po[p + 6], *q7 = base + po[p + 7];
        v8f a0 = bias, a1 = bias, a2 = bias, a3 = bias, a4 = bias, a5 = bias, a6 = bias, a7 = bias;
        for (intptr_t t = 0; t < taps; t++) {
            const intptr_t o = to[t];
            const v8f v = LOAD8(w + t * 32);
            a0 = MADD(a0, LOAD8(q0 + o), v);
            a1 = MADD(a1, LOAD8(q1 + o), v);
            a2 = MADD(a2, LOAD8(q2 + o), v);
            a3 = MADD(a3, LOAD8(q3 + o), v);
            a4 = MADD(a4, LOAD8(q4 + o), v);
            a5 = MADD(a5, LOAD8(q5 + o), v);
            a6 = MADD(a6, LOAD8(q6 + o), v);
            a7 = MADD(a7, LOAD8(q7 + o), v);
        }
        float *d = out + p * 8;
        memcpy(d, &a0, 32); memcpy(d + 8, &a1, 32); memcpy(d + 16, &a2, 32); memcpy(d + 24, &a3, 32);
        memcpy(d + 32, &a4, 32); memcpy(d + 40, &a5, 32); memcpy(d + 48, &a6, 32); memcpy(d + 56, &a7, 32);
    }
    for (; p < pixels; p++) {
        v8f a = bias;
        const char *q = base + po[p];
        for (intptr_t t = 0; t < taps; t++) a = MADD(a, LOAD8(q + to[t]), LOAD8(w + t * 32));
        memcpy(out + p * 8, &a, 32);
    }
}

/* Transposes the 8x8 block held in r[0..7] (r[i][j] becomes r[j][i]). */
static inline void SUFFIX(transpose8)(v8f r[8]) {
    v8f t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

void SUFFIX(braid_interleave8)(const float *src, intptr_t plane, intptr_t n, float *dst) {
    intptr_t c = 0;
    for (; c + 8 <= n; c += 8) {
        v8f r[8];
        for (int l = 0; l < 8; l++) r[l] = LOAD8(src + l * plane + c);
        SUFFIX(transpose8)(r);
        memcpy(dst + c * 8, r, sizeof r);
    }
    for (; c < n; c++)
        for (int l = 0; l < 8; l++) dst[c * 8 + l] = src[l * plane + c];
}

void SUFFIX(braid_deinterleave8)(const float *src, intptr_t n, float *dst, intptr_t plane, const float *residual) {
    intptr_t c = 0;
    for (; c + 8 <= n; c += 8) {
        v8f r[8];
        memcpy(r, src + c * 8, sizeof r);
        SUFFIX(transpose8)(r);
        for (int l = 0; l < 8; l++) {
            v8f v = r[l];
            if (residual) v += LOAD8(residual + l * plane + c);
            memcpy(dst + l * plane + c, &v, 32);
        }
    }
    for (; c < n; c++)
        for (int l = 0; l < 8; l++)
            dst[l * plane + c] = src[c * 8 + l] + (residual ? residual[l * plane + c] : 0.0f);
}

typedef int32_t v8i __attribute__((vector_size(32), aligned(4)));

static inline void SUFFIX(pool_row)(const int average, const int stride2, const float *base, const intptr_t *offsets,
                                    intptr_t nrows, intptr_t kw, intptr_t tap, float divisor, float *out,
                                    intptr_t count) {
    for (intptr_t j = 0; j < count; j += 8) {
        if (j + 8 > count) j = count - 8;
        v8f acc = (v8f){0} + (average ? 0.0f : -__builtin_inff());
        for (intptr_t r = 0; r < nrows; r++) {
            const float *p = base + offsets[r] + (stride2 ? 2 * j : j);
            for (intptr_t kx = 0; kx < kw; kx++) {
                const float *q = p + kx * tap;
                v8f v;
                if (stride2) {
                    /* Elements 0, 2, ..., 14 of the 15 floats from q, reading no further. */
                    const v8f lo = LOAD8(q), hi = LOAD8(q + 7);
                    v = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 9, 11, 13, 15);
                } else {
                    v = LOAD8(q);
                }
                if (average) {
                    acc = acc + v;
                } else {
                    const v8i m = (v8i)(v > acc);
                    acc = (v8f)((m & (v8i)v) | (~m & (v8i)acc));
                }
            }
        }
        if (average) acc = nrows > 0 ? acc / divisor : (v8f){0};
        memcpy(out + j, &acc, 32);
    }
}

void SUFFIX(braid_pool_row)(int average, const float *base, const intptr_t *offsets, intptr_t nrows, intptr_t kw,
                            intptr_t tap, intptr_t stride, float divisor, float *out, intptr_t count) {
    if (average) {
        if (stride == 2) SUFFIX(pool_row)(1, 1, base, offsets, nrows, kw, tap, divisor, out, count);
        else SUFFIX(pool_row)(1, 0, base, offsets, nrows, kw, tap, divisor, out, count);
    } else {
        if (stride == 2) SUFFIX(pool_row)(0, 1, base, offsets, nrows, kw, tap, divisor, out, count);
        else SUFFIX(pool_row)(0, 0, base, offsets, nrows, kw, tap, divisor, out, count);
    }
}

void SUFFIX(braid_gather_even)(const float *src, intptr_t n, float *dst) {
    intptr_t i = 0;
    for (; i + 8 <= n; i += 8) {
        /* Elements 0, 2, ..., 14 of the 15 floats from src + 2i, reading no further. */
        const v8f lo = LOAD8(src + 2 * i), hi = LOAD8(src + 2 * i + 7);
        const v8f v = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 9, 11, 13, 15);
        memcpy(dst + i, &v, 32);
    }
    for (; i < n; i++) dst[i] = src[2 * i];
}

/* Rows `valid` (1 to 4) of a 4-row strip of the same product over `cols` >= 16 columns, written
   to `y` (rows `ldy` apart) with `residual` (same layout, or NULL) added: 16 columns at a time,
   the last 16 stepping back to end at `cols` (recomputing a few columns: `y` never aliases the
   inputs). */
void SUFFIX(braid_smallk_strip)(const float *b, const intptr_t *ro, intptr_t k, const float *w0, const float *w1,
                                const float *w2, const float *w3, const float *bias4, intptr_t cols, float *y,
                                intptr_t ldy, const float *residual, intptr_t valid) {
    for (intptr_t q = 0; q < cols; q += 16) {
        if (q + 16 > cols) q = cols - 16;
        /* Four named accumulators (an array indexed at run time would live in memory). */
        v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        a0 += bias4[0]; a1 += bias4[1]; a2 += bias4[2]; a3 += bias4[3];
        const float *bq = b + q;
        for (intptr_t j = 0; j < k; j++) {
            const v16f x = LOAD16(bq + ro[j]);
            a0 = MADD(a0, x, (v16f){0} + w0[j]);
            a1 = MADD(a1, x, (v16f){0} + w1[j]);
            a2 = MADD(a2, x, (v16f){0} + w2[j]);
            a3 = MADD(a3, x, (v16f){0} + w3[j]);
        }
        float *d = y + q;
        const float *r = residual ? residual + q : NULL;
        if (r) a0 += LOAD16(r);
        memcpy(d, &a0, 64);
        if (valid > 1) {
            if (r) a1 += LOAD16(r + ldy);
            memcpy(d + ldy, &a1, 64);
        }
        if (valid > 2) {
            if (r) a2 += LOAD16(r + 2 * ldy);
            memcpy(d + 2 * ldy, &a2, 64);
        }
        if (valid > 3) {
            if (r) a3 += LOAD16(r + 3 * ldy);
            memcpy(d + 3 * ldy, &a3, 64);
        }
    }
}

/*
 * Element maps on the set's own vector width VEC (VLEN floats; VINT the integers of the same
 * width): exp by a degree-6 polynomial after reducing by ln 2 (relative error about 2e-7;
 * overflow gives +inf, results below the smallest normal float 0, NaN stays NaN), sigmoid as
 * 1 / (1 + e^-x), SiLU as x / (1 + e^-x), tanh by a polynomial for |x| < 0.625 and from e^2|x| beyond.
 */
#define SELECT(m, a, b) ((VEC)(((VINT)(m) & (VINT)(a)) | (~(VINT)(m) & (VINT)(b))))
#define SPLAT(c) ((VEC){0} + (float)(c))

static inline VEC SUFFIX(vexp)(VEC v) {
    const VEC x = __builtin_elementwise_min(__builtin_elementwise_max(v, SPLAT(-87.336544f)), SPLAT(88.72283f));
    const VEC t = __builtin_elementwise_min(__builtin_elementwise_max(x * 1.44269504f, SPLAT(-126)), SPLAT(127))
                  + 12582912.0f;
    const VEC n = t - 12582912.0f;
    const VEC r = x - n * 0.693359375f - n * -2.1219444e-4f;
    VEC p = SPLAT(1.98756915e-4f);
    p = MADD(SPLAT(1.3981999507e-3f), p, r);
    p = MADD(SPLAT(8.3334519073e-3f), p, r);
    p = MADD(SPLAT(4.1665795894e-2f), p, r);
    p = MADD(SPLAT(1.6666665459e-1f), p, r);
    p = MADD(SPLAT(5.0000001201e-1f), p, r);
    const VEC er = MADD(r + 1.0f, p * r, r);
    const VEC scale = (VEC)(((VINT)t - 0x4B400000 + 127) << 23);
    VEC out = er * scale;
    out = SELECT(v > 88.72283f, SPLAT(__builtin_inff()), out);
    out = SELECT(v < -87.336544f, SPLAT(0), out);
    return SELECT(v != v, v, out);
}

static inline VEC SUFFIX(vsigmoid)(VEC v) { return 1.0f / (1.0f + SUFFIX(vexp)(-v)); }

static inline VEC SUFFIX(vsilu)(VEC v) { return v / (1.0f + SUFFIX(vexp)(-v)); }

static inline VEC SUFFIX(vtanh)(VEC v) {
    const VEC a = (VEC)((VINT)v & 0x7FFFFFFF);
    const VEC z = v * v;
    VEC p = SPLAT(-5.70498872745e-3f);
    p = MADD(SPLAT(2.06390887954e-2f), p, z);
    p = MADD(SPLAT(-5.37397155531e-2f), p, z);
    p = MADD(SPLAT(1.33314422036e-1f), p, z);
    p = MADD(SPLAT(-3.33332819422e-1f), p, z);
    const VEC small = MADD(v, p * z, v);
    const VEC large = 1.0f - 2.0f / (SUFFIX(vexp)(2.0f * a) + 1.0f);
    VEC out = SELECT(a < 0.625f, small, SELECT(v < 0.0f, -large, large));
    return SELECT(v != v, v, out);
}

/*
 * erf and GELU. For |x| < 1, erf(x) = x P(x^2) (P of degree 6, fitted here to erf(x)/x on
 * [0, 1] by relative least squares: at most 1.7e-7 relative in float32). Beyond, from
 * erfc(a) = e^(-a^2) R(1/a), R of degree 9 fitted on 1/a in [1/9.5, 1] (3.3e-7 relative; past
 * 9.5, e^(-a^2) is 0 in float32); e^(-a^2) is e^(-h) (1 - l) with h + l = a^2 exactly where
 * the set has FMA, so the exponent's rounding does not cost 16 ulp at a = 4.
 */
static inline VEC SUFFIX(verf_small)(VEC a) {
    const VEC z = a * a;
    VEC p = SPLAT(7.847017695894465e-05f);
    p = MADD(SPLAT(-8.008115692064166e-04f), p, z);
    p = MADD(SPLAT(5.188090261071920e-03f), p, z);
    p = MADD(SPLAT(-2.685368619859219e-02f), p, z);
    p = MADD(SPLAT(1.128358244895935e-01f), p, z);
    p = MADD(SPLAT(-3.761262595653534e-01f), p, z);
    p = MADD(SPLAT(1.128379106521606e+00f), p, z);
    return a * p;
}

/* erfc(a) for a >= 1 (any value for a < 1, which callers discard); 0 from a = 10 on. */
static inline VEC SUFFIX(verfc_large)(VEC v) {
    const VEC a = __builtin_elementwise_min(__builtin_elementwise_max(v, SPLAT(1)), SPLAT(10));
    const VEC t = 1.0f / a;
    VEC r = SPLAT(7.133932411670685e-02f);
    r = MADD(SPLAT(-3.968813121318817e-01f), r, t);
    r = MADD(SPLAT(9.398337006568909e-01f), r, t);
    r = MADD(SPLAT(-1.192539811134338e+00f), r, t);
    r = MADD(SPLAT(7.715970277786255e-01f), r, t);
    r = MADD(SPLAT(-4.903800413012505e-02f), r, t);
    r = MADD(SPLAT(-2.816633582115173e-01f), r, t);
    r = MADD(SPLAT(8.484107092954218e-04f), r, t);
    r = MADD(SPLAT(5.640835165977478e-01f), r, t);
    r = MADD(SPLAT(4.134882146900054e-06f), r, t);
    const VEC h = a * a;
    const VEC l = MADD(-h, a, a); /* a * a - h: exact with FMA, 0 without */
    const VEC e = SUFFIX(vexp)(-h);
    return r * MADD(e, e, -l);
}

static inline VEC SUFFIX(verf)(VEC v) {
    const VEC a = (VEC)((VINT)v & 0x7FFFFFFF);
    const VINT sign = (VINT)v & INT32_MIN;
    const VEC m = SELECT(a < 1.0f, SUFFIX(verf_small)(a), 1.0f - SUFFIX(verfc_large)(a));
    return SELECT(v != v, v, (VEC)((VINT)m | sign));
}

/* GELU, x (1 + erf(x / sqrt 2)) / 2, with the lower tail from erfc (no cancellation). */
static inline VEC SUFFIX(vgelu)(VEC v) {
    const VEC a = (VEC)((VINT)v & 0x7FFFFFFF) * 0.70710678118654752f;
    const VEC e = SUFFIX(verf_small)(a);
    const VEC c = 0.5f * SUFFIX(verfc_large)(a);
    const VEC small = SELECT(v < 0.0f, 0.5f - 0.5f * e, 0.5f + 0.5f * e);
    const VEC large = SELECT(v < 0.0f, c, 1.0f - c);
    return v * SELECT(a < 1.0f, small, large);
}

#define BRAID_MAP_LOOP(fn)                                                                              \
    do {                                                                                                \
        intptr_t i = 0;                                                                                 \
        for (; i + VLEN <= n; i += VLEN) {                                                              \
            VEC v;                                                                                      \
            memcpy(&v, x + i, sizeof v);                                                                \
            v = fn(v);                                                                                  \
            memcpy(y + i, &v, sizeof v);                                                                \
        }                                                                                               \
        if (i < n) {                                                                                    \
            VEC v = {0};                                                                                \
            memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));                                         \
            v = fn(v);                                                                                  \
            memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));                                         \
        }                                                                                               \
    } while (0)

void SUFFIX(braid_map)(int function, const float *x, float *y, intptr_t n) {
    switch (function) {
    case BRAID_MAP_EXP: BRAID_MAP_LOOP(SUFFIX(vexp)); break;
    case BRAID_MAP_SIGMOID: BRAID_MAP_LOOP(SUFFIX(vsigmoid)); break;
    case BRAID_MAP_TANH: BRAID_MAP_LOOP(SUFFIX(vtanh)); break;
    case BRAID_MAP_SILU: BRAID_MAP_LOOP(SUFFIX(vsilu)); break;
    case BRAID_MAP_ERF: BRAID_MAP_LOOP(SUFFIX(verf)); break;
    case BRAID_MAP_GELU: BRAID_MAP_LOOP(SUFFIX(vgelu)); break;
    default: break;
    }
}

static inline VEC SUFFIX(vclamp01)(VEC t) {
    t = SELECT(t < 0.0f, SPLAT(0), t);
    return SELECT(t > 1.0f, SPLAT(1), t);
}

/* One statement per rounding: no multiply-add is fused, so every set gives the same floats as
   the Swift forms of these functions. */
static inline VEC SUFFIX(vhardsigmoid)(VEC v, float alpha, float beta) {
    VEC t = v * alpha;
    t = t + beta;
    return SUFFIX(vclamp01)(t);
}

static inline VEC SUFFIX(vhardswish)(VEC v) {
    VEC t = v * (1.0f / 6.0f);
    t = t + 0.5f;
    return v * SUFFIX(vclamp01)(t);
}

static inline VEC SUFFIX(vclip)(VEC v, float lo, float hi) {
    v = SELECT(v < lo, SPLAT(lo), v);
    return SELECT(v > hi, SPLAT(hi), v);
}

#define BRAID_ACT_LOOP(fn)                                                                              \
    for (intptr_t r = 0; r < rows; r++) {                                                               \
        float *x = y + r * stride;                                                                      \
        intptr_t i = 0;                                                                                 \
        for (; i + VLEN <= cols; i += VLEN) {                                                           \
            VEC v;                                                                                      \
            memcpy(&v, x + i, sizeof v);                                                                \
            v = fn;                                                                                     \
            memcpy(x + i, &v, sizeof v);                                                                \
        }                                                                                               \
        if (i < cols) {                                                                                 \
            VEC v = {0};                                                                                \
            memcpy(&v, x + i, (size_t)(cols - i) * sizeof(float));                                     \
            v = fn;                                                                                     \
            memcpy(x + i, &v, (size_t)(cols - i) * sizeof(float));                                     \
        }                                                                                               \
    }

void SUFFIX(braid_activate)(int kind, float a, float b, float *y, intptr_t rows, intptr_t cols, intptr_t stride) {
    switch (kind) {
    case BRAID_ACT_RELU: BRAID_ACT_LOOP(SELECT(v < 0.0f, SPLAT(0), v)); break;
    case BRAID_ACT_LEAKY_RELU: BRAID_ACT_LOOP(SELECT(v < 0.0f, v * a, v)); break;
    case BRAID_ACT_CLIP: BRAID_ACT_LOOP(SUFFIX(vclip)(v, a, b)); break;
    case BRAID_ACT_HARD_SIGMOID: BRAID_ACT_LOOP(SUFFIX(vhardsigmoid)(v, a, b)); break;
    case BRAID_ACT_HARD_SWISH: BRAID_ACT_LOOP(SUFFIX(vhardswish)(v)); break;
    case BRAID_ACT_SIGMOID: BRAID_ACT_LOOP(SUFFIX(vsigmoid)(v)); break;
    case BRAID_ACT_SILU: BRAID_ACT_LOOP(SUFFIX(vsilu)(v)); break;
    default: break;
    }
}

/* acc[j] = fma(w[t], b[t * ldb + j], acc[j]) for t = 0 ..< k in order, j < n: fused (one
   rounding) in every set; without FMA hardware the compiler calls fmaf, which is exact too. */
void SUFFIX(braid_fma_chain)(float *acc, const float *b, intptr_t ldb, const float *w, intptr_t k, intptr_t n) {
    intptr_t j = 0;
    for (; j + VLEN <= n; j += VLEN) {
        VEC a;
        memcpy(&a, acc + j, sizeof a);
        for (intptr_t t = 0; t < k; t++) {
            VEC v;
            memcpy(&v, b + t * ldb + j, sizeof v);
            a = __builtin_elementwise_fma((VEC){0} + w[t], v, a);
        }
        memcpy(acc + j, &a, sizeof a);
    }
    for (; j < n; j++) {
        float a = acc[j];
        for (intptr_t t = 0; t < k; t++) a = __builtin_fmaf(w[t], b[t * ldb + j], a);
        acc[j] = a;
    }
}
