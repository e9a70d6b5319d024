// follow_intersect_kernels.h compiled again for AVX2, as kgqa::cpu_avx2: as follow_avx2.cpp
// (which says why everything else is included before the target pragma).
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
#undef KGQA_CPU_NS
#pragma GCC pop_options
#endif
