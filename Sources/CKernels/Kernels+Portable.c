/* The kernels for any CPU of the architecture the package is built for. */
#include "CKernels.h"
#include "Kernels+Sets.h"

#define SUFFIX(name) name##_portable
#define MADD(a, b, c) ((a) + (b) * (c))
/* The element maps' vector: the widest register of the set. */
typedef float VEC __attribute__((vector_size(16)));
typedef int32_t VINT __attribute__((vector_size(16)));
#define VLEN 4
#include "Kernels+Body.h"
