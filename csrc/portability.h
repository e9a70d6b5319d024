// Functions that CUDA kernels call are __host__ __device__ under nvcc and plain C++ elsewhere.
#pragma once

#if defined(__CUDACC__)
#define KGQA_HD __host__ __device__
#else
#define KGQA_HD
#endif
