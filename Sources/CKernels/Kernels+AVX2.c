/* The kernels for x86-64 CPUs with AVX2 and FMA (Haswell, Zen and later). */
#include "CKernels.h"
#include "Kernels+Sets.h"

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define SUFFIX(name) name##_avx2
#define MADD(a, b, c) __builtin_elementwise_fma((b), (c), (a))
/* The element maps' vector: the widest register of the set. */
typedef float VEC __attribute__((vector_size(32)));
typedef int32_t VINT __attribute__((vector_size(32)));
#define VLEN 8
#include "Kernels+Body.h"
#pragma clang attribute pop
#endif
