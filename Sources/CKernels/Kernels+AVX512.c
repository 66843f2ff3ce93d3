/* The kernels for x86-64 CPUs with AVX-512 F and VL (Skylake-SP, Zen 4 and later). */
#include "CKernels.h"
#include "Kernels+Sets.h"

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx2,fma"))), apply_to = function)
#define SUFFIX(name) name##_avx512
#define MADD(a, b, c) __builtin_elementwise_fma((b), (c), (a))
/* The element maps' vector: the widest register of the set. */
typedef float VEC __attribute__((vector_size(64)));
typedef int32_t VINT __attribute__((vector_size(64)));
#define VLEN 16
#include "Kernels+Body.h"
#pragma clang attribute pop
#endif
