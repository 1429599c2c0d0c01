// Portable qualifiers for math shared by the C++ (CPU) and CUDA kernels.
// Headers in csrc/common/ include no torch headers, so .cu files can use them under plain nvcc.
#pragma once

#if defined(__CUDACC__)
#define PF_HD __host__ __device__ __forceinline__
#else
#define PF_HD inline
#endif

#include <cmath>
#include <cstdint>

namespace pointformer {
// Unqualified math calls in shared code pick the float overloads on the host (libstdc++ puts
// them in std:: only) and CUDA's device overloads under nvcc.
using std::cos;
using std::fabs;
using std::floor;
using std::fmax;
using std::fmin;
using std::sin;
using std::sqrt;
}  // namespace pointformer
