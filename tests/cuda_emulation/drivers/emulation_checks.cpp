// Checks of the emulation itself (tests/cuda_emulation/test_emulation.py runs them): the built-in
// indices, barriers and static shared memory, poisoning between blocks, launch-configuration and
// shared-memory limits, the opt-in, atomics, divergent barriers, cudaGetLastError. Prints one
// line per check ("ok <name>" or "FAIL <name>: ...") and exits 1 when any failed.
//
// `emulation_checks convert <in> <out>` instead reads float32 values from <in> and writes, per
// value, the bits of __half(value) and __nv_bfloat16(value), then float(half bits h) for every h
// in 0..65535 and float(bfloat16 bits h) likewise, for comparison with torch's conversions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void report(const char* name, bool ok, const std::string& detail = "") {
  if (ok) {
    std::printf("ok %s\n", name);
  } else {
    ++failures;
    std::printf("FAIL %s: %s\n", name, detail.c_str());
  }
}

__global__ void index_kernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * blockIdx.y;
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  out[block * threads + thread] = static_cast<int>(block * 1000 + thread);
}

__global__ void reverse_kernel(const int* in, int* out) {
  __shared__ int tile[128];
  const int base = blockIdx.x * blockDim.x;
  tile[threadIdx.x] = in[base + threadIdx.x];
  __syncthreads();
  out[base + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}

// Reads a shared value no thread of this block wrote yet, then writes it for "the next block".
__global__ void stale_kernel(int* out) {
  __shared__ int carried;
  if (threadIdx.x == 0) out[blockIdx.x] = carried;
  __syncthreads();
  if (threadIdx.x == 0) carried = static_cast<int>(blockIdx.x);
}

__global__ void dynamic_kernel(int* out, int count) {
  extern __shared__ int buffer[];
  for (int i = threadIdx.x; i < count; i += blockDim.x) buffer[i] = i;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = buffer[count - 1];
}

__global__ void atomic_kernel(float* f, unsigned long long* u, double* d) {
  atomicAdd(f, 1.0f);
  atomicAdd(u, 1ULL);
  atomicAdd(d, 0.5);
}

__global__ void divergent_kernel(int* out) {
  if (threadIdx.x < 10) __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void uniform_exit_kernel(int* out) {
  if (blockIdx.x == 1) return;  // the whole block: fine
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
}

__global__ void noop_kernel() {}

int convert(const char* in_path, const char* out_path) {
  std::FILE* in = std::fopen(in_path, "rb");
  std::FILE* out = std::fopen(out_path, "wb");
  if (!in || !out) return 2;
  float value;
  while (std::fread(&value, sizeof value, 1, in) == 1) {
    const __half h(value);
    const __nv_bfloat16 b(value);
    std::fwrite(&h.__x, 2, 1, out);
    std::fwrite(&b.__x, 2, 1, out);
  }
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    __half h;
    h.__x = static_cast<uint16_t>(bits);
    const float f = h;
    std::fwrite(&f, sizeof f, 1, out);
  }
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    __nv_bfloat16 b;
    b.__x = static_cast<uint16_t>(bits);
    const float f = b;
    std::fwrite(&f, sizeof f, 1, out);
  }
  std::fclose(in);
  std::fclose(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "convert") == 0) return convert(argv[2], argv[3]);

  {  // gridDim, blockDim, blockIdx, threadIdx over a 2-D grid of 3-D blocks
    std::vector<int> out(3 * 2 * 4 * 2 * 2, -1);
    index_kernel<<<dim3(3, 2), dim3(4, 2, 2)>>>(out.data());
    bool ok = cudaGetLastError() == cudaSuccess;
    for (size_t i = 0; i < out.size(); ++i) ok = ok && out[i] == static_cast<int>((i / 16) * 1000 + i % 16);
    report("indices", ok);
  }
  {  // __syncthreads orders the writes of static shared memory before the reads
    std::vector<int> in(4 * 128), out(4 * 128, -1);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<int>(i);
    reverse_kernel<<<4, 128>>>(in.data(), out.data());
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < 4; ++b)
      for (int t = 0; t < 128; ++t) ok = ok && out[b * 128 + t] == b * 128 + 127 - t;
    report("barrier_and_static_shared", ok);
  }
  {  // shared memory does not carry over from one block to the next: it is poisoned
    std::vector<int> out(5, 0);
    stale_kernel<<<5, 32>>>(out.data());
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int v : out) ok = ok && v == -1;
    report("shared_poisoned_between_blocks", ok, "read " + std::to_string(out[1]) + " in block 1");
  }
  {  // dynamic shared memory: 48 KiB by default, more after the opt-in, never over the device's limit
    int out = -1;
    dynamic_kernel<<<1, 64, 48 * 1024>>>(&out, 48 * 256);
    report("dynamic_shared_48k", cudaGetLastError() == cudaSuccess && out == 48 * 256 - 1);
    out = -1;
    dynamic_kernel<<<1, 64, 48 * 1024 + 4>>>(&out, 48 * 256 + 1);
    const cudaError_t over = cudaGetLastError();
    report("dynamic_shared_over_default", over == cudaErrorInvalidValue && out == -1,
           "error " + std::to_string(over) + ", out " + std::to_string(out));
    const cudaError_t opt_in =
        cudaFuncSetAttribute(dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
    dynamic_kernel<<<1, 64, 100 * 1024>>>(&out, 100 * 256);
    report("dynamic_shared_opt_in", opt_in == cudaSuccess && cudaGetLastError() == cudaSuccess && out == 100 * 256 - 1);
    const cudaError_t too_much =
        cudaFuncSetAttribute(dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024);
    cudaGetLastError();
    report("dynamic_shared_device_limit", too_much == cudaErrorInvalidValue);
  }
  {  // launch configurations the hardware rejects
    noop_kernel<<<1, 1025>>>();
    const cudaError_t threads = cudaGetLastError();
    noop_kernel<<<1, dim3(1, 1, 65)>>>();
    const cudaError_t depth = cudaGetLastError();
    noop_kernel<<<dim3(1, 65536), 32>>>();
    const cudaError_t grid_y = cudaGetLastError();
    noop_kernel<<<0, 32>>>();
    const cudaError_t empty = cudaGetLastError();
    report("invalid_configurations",
           threads == cudaErrorInvalidConfiguration && depth == cudaErrorInvalidConfiguration &&
               grid_y == cudaErrorInvalidConfiguration && empty == cudaErrorInvalidConfiguration);
    report("last_error_resets", cudaGetLastError() == cudaSuccess && cudaPeekAtLastError() == cudaSuccess);
  }
  {  // atomics from every thread of several blocks
    float f = 0;
    unsigned long long u = 0;
    double d = 0;
    atomic_kernel<<<4, 256>>>(&f, &u, &d);
    report("atomics", cudaGetLastError() == cudaSuccess && f == 1024.0f && u == 1024 && d == 512.0);
  }
  {  // a barrier that only some threads reach is reported, with the kernel's name
    std::vector<int> out(64, 0);
    divergent_kernel<<<1, 64>>>(out.data());
    const cudaError_t err = cudaGetLastError();
    const std::string message = cudaGetErrorString(err);
    report("divergent_barrier",
           err == cudaErrorLaunchFailure && message.find("divergent __syncthreads") != std::string::npos &&
               message.find("divergent_kernel") != std::string::npos,
           message);
    std::vector<int> ok_out(3 * 32, 0);
    uniform_exit_kernel<<<3, 32>>>(ok_out.data());
    report("uniform_exit_before_barrier", cudaGetLastError() == cudaSuccess && ok_out[0] == 1 && ok_out[32] == 0);
  }
  return failures ? 1 : 0;
}
