// The CPU loops compiled again for AVX2, as kgqa::cpu_avx2: follow_kernels.h (follow's pulls and
// dr) and follow_intersect_kernels.h (csrc/cpu/isa.h: why, and how the ops choose). Everything
// outside this package is included before the target pragma, so only this package's own loops (in
// their own namespace) are compiled for AVX2: an inline function of torch or the standard library
// compiled here for AVX2 could be the one copy the linker keeps, and run on a CPU without it.
// "avx2" without "fma": the same multiplies and adds as the baseline copy, so bitwise the same
// results.
#include "isa.h"

#if KGQA_HAVE_AVX2_KERNELS
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "../bounds.h"
#include "../checks.h"
#include "../huge_pages.h"
#include "../kb_layout.h"
#include "../tnorm.h"

#pragma GCC push_options
#pragma GCC target("avx2")
#define KGQA_CPU_NS cpu_avx2
#include "follow_intersect_kernels.h"
#include "follow_kernels.h"
#undef KGQA_CPU_NS
#pragma GCC pop_options
#endif
