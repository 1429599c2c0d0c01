// Stand-ins for CUDA's __half and __nv_bfloat16 storage types, so the emulated kernels build
// without the CUDA toolkit. Only what the kernels use: construction from float (and int), and
// conversion to float. Conversions round to nearest even, bit for bit as __float2half_rn and
// __float2bfloat16_rn (and c10::Half / c10::BFloat16) do for every non-NaN value; NaN stays a
// quiet NaN. No arithmetic operators: kernels compute in float (AccType) and convert at the ends,
// and a kernel that did arithmetic on half values would fail to compile here instead of being
// emulated with different rounding.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace pf_emu {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t float_to_half_bits(float value) {
  const uint32_t f = float_bits(value);
  const uint16_t sign = static_cast<uint16_t>((f >> 16) & 0x8000u);
  const uint32_t magnitude = f & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) return sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, inf
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds past the largest half, 65504
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a subnormal half, a multiple of 2^-24. Scaling by 2^24 is exact in float and
    // nearbyint rounds half to even in the default rounding mode; 1024 is the smallest normal.
    return sign | static_cast<uint16_t>(std::nearbyint(bits_float(magnitude) * 16777216.0f));
  }
  const uint32_t exponent = (magnitude >> 23) - 127 + 15, mantissa = magnitude & 0x7fffffu;
  uint32_t half = (exponent << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;                        // the 13 dropped bits
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // a carry moves into the exponent
  return sign | static_cast<uint16_t>(half);
}

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    const float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;  // * 2^-24, exact
    return sign ? -value : value;
  }
  return bits_float(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

inline uint16_t float_to_bfloat16_bits(float value) {
  const uint32_t f = float_bits(value);
  if ((f & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((f >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((f + 0x7fffu + ((f >> 16) & 1u)) >> 16);
}

inline float bfloat16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace pf_emu

struct __half {
  uint16_t __x;
  __half() = default;
  __half(float f) : __x(pf_emu::float_to_half_bits(f)) {}
  __half(int i) : __half(static_cast<float>(i)) {}
  // Deleted, not rounded through float: CUDA rounds a double to half once, and a double rounding
  // here would differ in rare ties. No kernel converts double to half today.
  __half(double) = delete;
  operator float() const { return pf_emu::half_bits_to_float(__x); }
};

struct __nv_bfloat16 {
  uint16_t __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(pf_emu::float_to_bfloat16_bits(f)) {}
  __nv_bfloat16(int i) : __nv_bfloat16(static_cast<float>(i)) {}
  __nv_bfloat16(double) = delete;
  operator float() const { return pf_emu::bfloat16_bits_to_float(__x); }
};

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "same layout as at::Half / at::BFloat16");

inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return static_cast<float>(b); }
