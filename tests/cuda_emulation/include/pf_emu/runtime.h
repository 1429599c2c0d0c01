// A CPU emulation of the CUDA execution model, for running the project's .cu kernels (and the
// torch-facing wrappers around them) on machines without a GPU. Tests only; see
// tests/cuda_emulation/README.md for the whole harness.
//
// What it models:
// - launches: `kernel<<<grid, block, smem, stream>>>(args)` is rewritten by build.py into
//   `::pf_emu::launch("kernel", kernel, grid, block, smem, stream)(args)`. The launch is checked
//   like the hardware checks it (1..1024 threads per block, block.z <= 64, grid.y/z <= 65535,
//   dynamic shared memory <= 48 KiB unless cudaFuncSetAttribute raised the kernel's limit, up to
//   227 KiB as on an H100); a bad launch runs nothing and leaves its error for cudaGetLastError.
// - threads: blocks run one after another (so a block's shared memory can be plain static
//   storage). The threads of a block run on one of two engines: fibers (user-level contexts on the
//   calling thread, run in a fixed order from barrier to barrier: fast and reproducible; the
//   default) or OS threads (one per CUDA thread, truly concurrent: the default under
//   ThreadSanitizer, which then sees every race between them; PF_EMU_ENGINE=threads|fibers
//   chooses). gridDim, blockDim, blockIdx, threadIdx are per thread.
// - __syncthreads: a barrier over the block's threads (a thread that returns leaves it). With
//   fibers, a missing barrier shows as reads of poisoned shared memory (thread 0 runs on before
//   thread 1 has written anything); with OS threads, as a ThreadSanitizer race. Either way
//   the emulation counts the barriers each thread passed: a block whose threads passed
//   different numbers (a barrier in divergent code, an early return before a barrier) is reported
//   as a launch failure naming the kernel, the block and two disagreeing threads.
// - shared memory: static `__shared__` arrays (rewritten to registered statics) and the dynamic
//   `extern __shared__` buffer (a fresh heap buffer of exactly the launch's size, so ASan sees
//   overruns) are filled with 0xff bytes before every block: reads of shared memory that no
//   thread of the block wrote give NaN or -1 instead of an earlier block's values.
// - atomics (atomicAdd and friends) on std::atomic_ref; __threadfence as a fence.
// - errors: cudaGetLastError / cudaPeekAtLastError / cudaGetErrorString, with the emulation's own
//   message (kernel, block, threads) for failures it detects.
//
// What it does not model: warp-level behaviour (warp-synchronous code, __shfl*, __ballot*, vote
// and match intrinsics, __syncwarp, warpSize: using one is a compile error that says so),
// concurrency between blocks (a kernel whose blocks wait for each other would hang, one that races
// between blocks is not caught), streams and events (every launch runs to completion before it
// returns), host versus device memory (pointers are host pointers; the wrappers run on CPU
// tensors), __launch_bounds__, registers and occupancy, and the speed of anything.
#pragma once
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "half.h"

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer's fiber annotations: it must know which stack is in use after a switch.
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, size_t* size_old);
#endif

// --- CUDA's vocabulary --------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// No __shared__ macro on purpose: build.py rewrites every `__shared__` declaration, and one it
// could not rewrite must fail to compile rather than become a per-thread variable.

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

// The values of CUDA's runtime API, so messages and logs read the same.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

// The built-in variables: per OS thread, set by the launch before the kernel body runs.
inline thread_local dim3 gridDim, blockDim, blockIdx, threadIdx;

namespace pf_emu {

constexpr size_t kDefaultDynamicSmem = 48 * 1024;
constexpr size_t kMaxOptInSmem = 227 * 1024;
constexpr unsigned int kMaxThreadsPerBlock = 1024;
constexpr unsigned char kPoison = 0xff;

// A reusable barrier whose party count can shrink (threads that return leave it). The mutex
// orders the arrivals; the last one bumps the generation with release semantics, so everything
// every thread did before the barrier happens-before everything after it (ThreadSanitizer sees
// this through the mutex and the atomic).
class Barrier {
 public:
  void reset(unsigned int parties) {
    std::lock_guard<std::mutex> lock(mutex_);
    parties_ = parties;
    arrived_ = 0;
  }

  // Waits for the other parties; the last to arrive runs on_last first (while the others wait).
  template <typename F>
  void arrive_and_wait(const F& on_last) {
    uint32_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_.load(std::memory_order_relaxed);
      if (++arrived_ == parties_) {
        on_last();
        release_locked(generation);
        return;
      }
    }
    while (generation_.load(std::memory_order_acquire) == generation) generation_.wait(generation);
  }

  void arrive_and_wait() {
    arrive_and_wait([] {});
  }

  // A thread leaves for good (its kernel body returned); releases the others if it was the last.
  void drop() {
    std::lock_guard<std::mutex> lock(mutex_);
    --parties_;
    if (arrived_ > 0 && arrived_ == parties_) release_locked(generation_.load(std::memory_order_relaxed));
  }

 private:
  void release_locked(uint32_t generation) {
    arrived_ = 0;
    generation_.store(generation + 1, std::memory_order_release);
    generation_.notify_all();
  }

  std::mutex mutex_;
  unsigned int parties_ = 0, arrived_ = 0;
  std::atomic<uint32_t> generation_{0};
};

struct Region {
  void* data;
  size_t bytes;
};

// One emulated thread of the fiber engine: a user-level context on its own stack.
struct Fiber {
  ucontext_t context;
  void* stack = nullptr;
  size_t stack_bytes = 0;
  bool done = false;
#if defined(__SANITIZE_ADDRESS__)
  void* fake_stack = nullptr;
#endif
};

// What one launch shares between its threads.
struct LaunchState {
  const char* name = "";
  const void* kernel = nullptr;
  dim3 grid, block;
  unsigned int threads = 0;
  unsigned char* dynamic_smem = nullptr;
  size_t dynamic_bytes = 0;
  Barrier sync;                           // __syncthreads
  Barrier boundary;                       // between blocks
  std::vector<uint64_t> barriers_passed;  // per thread, in the current block
  std::string failure;                    // first failure detected, empty while none
  const std::function<void()>* body = nullptr;
  // Fiber engine: the scheduler's context and the block's fibers (empty with the thread engine).
  ucontext_t scheduler;
  std::deque<Fiber>* fibers = nullptr;  // a deque: a ucontext_t points into itself, it must not move
#if defined(__SANITIZE_ADDRESS__)
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack = nullptr;
  size_t scheduler_stack_bytes = 0;
#endif
};

// Process-wide state. One launch at a time: blocks share static storage for __shared__.
struct Runtime {
  std::mutex launch_mutex;
  std::mutex state_mutex;  // guards the members below
  cudaError_t last_error = cudaSuccess;
  cudaError_t message_error = cudaSuccess;  // the error last_message explains
  std::string last_message;
  std::map<const void*, size_t> smem_limit;            // cudaFuncSetAttribute opt-ins
  std::map<const void*, std::vector<Region>> statics;  // static __shared__ arrays of each kernel
};

inline Runtime& runtime() {
  static Runtime r;
  return r;
}

inline thread_local LaunchState* current_launch = nullptr;
inline thread_local unsigned int current_thread = 0;  // linear thread index in the block

inline void set_error(cudaError_t error, std::string message) {
  Runtime& r = runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  r.last_error = r.message_error = error;
  r.last_message = std::move(message);
}

inline std::string format_dim(const dim3& d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

inline dim3 unlinear(unsigned int t, const dim3& extent) {
  return dim3(t % extent.x, (t / extent.x) % extent.y, t / (extent.x * extent.y));
}

// Called once per static __shared__ array (from its initializer, which C++ runs exactly once while
// the other threads of the block wait): registers the array with the running kernel and poisons it.
inline bool register_shared(void* data, size_t bytes) {
  Runtime& r = runtime();
  std::memset(data, kPoison, bytes);
  std::lock_guard<std::mutex> lock(r.state_mutex);
  r.statics[current_launch ? current_launch->kernel : nullptr].push_back(Region{data, bytes});
  return true;
}

template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(current_launch->dynamic_smem);
}

// Fiber engine: back to the scheduler, which resumes this fiber once every live fiber of the
// block has arrived at a barrier or finished.
inline void yield_to_scheduler(LaunchState& launch, Fiber& fiber, bool finished) {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(finished ? nullptr : &fiber.fake_stack, launch.scheduler_stack,
                                 launch.scheduler_stack_bytes);
#endif
  swapcontext(&fiber.context, &launch.scheduler);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(fiber.fake_stack, &launch.scheduler_stack, &launch.scheduler_stack_bytes);
#endif
}

inline void syncthreads() {
  LaunchState& launch = *current_launch;
  ++launch.barriers_passed[current_thread];
  if (launch.fibers) {
    yield_to_scheduler(launch, (*launch.fibers)[current_thread], false);
  } else {
    launch.sync.arrive_and_wait();
  }
}

// Runs on the last thread to finish a block, while the others wait: checks that every thread
// passed the same number of barriers and poisons shared memory for the next block.
inline void finish_block(LaunchState& launch, const dim3& block_index) {
  const std::vector<uint64_t>& passed = launch.barriers_passed;
  const auto [lo, hi] = std::minmax_element(passed.begin(), passed.end());
  if (*lo != *hi && launch.failure.empty()) {
    const unsigned int a = static_cast<unsigned int>(lo - passed.begin());
    const unsigned int b = static_cast<unsigned int>(hi - passed.begin());
    launch.failure = std::string("divergent __syncthreads in kernel ") + launch.name + ", block " +
                     format_dim(block_index) + ": thread " + format_dim(unlinear(a, launch.block)) + " passed " +
                     std::to_string(*lo) + " barriers, thread " + format_dim(unlinear(b, launch.block)) + " passed " +
                     std::to_string(*hi) +
                     " (a barrier in divergent code, or a return before a barrier that other threads reach)";
  }
  std::fill(launch.barriers_passed.begin(), launch.barriers_passed.end(), 0);
  launch.sync.reset(launch.threads);
  if (launch.dynamic_smem) std::memset(launch.dynamic_smem, kPoison, launch.dynamic_bytes);
  Runtime& r = runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  for (const Region& region : r.statics[launch.kernel]) std::memset(region.data, kPoison, region.bytes);
}

inline size_t smem_limit(const void* kernel) {
  Runtime& r = runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  const auto it = r.smem_limit.find(kernel);
  return it == r.smem_limit.end() ? kDefaultDynamicSmem : it->second;
}

// The checks the hardware makes before a kernel starts; an empty string when the launch is valid.
inline std::string invalid_configuration(const dim3& grid, const dim3& block) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      threads > kMaxThreadsPerBlock)
    return "block " + format_dim(block) + " is not 1..1024 threads (x, y <= 1024, z <= 64)";
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return "grid " + format_dim(grid) + " is out of range (x < 2^31, y, z <= 65535, none 0)";
  return "";
}

inline dim3 block_index(uint64_t b, const dim3& grid) {
  return dim3(static_cast<unsigned int>(b % grid.x), static_cast<unsigned int>((b / grid.x) % grid.y),
              static_cast<unsigned int>(b / (uint64_t(grid.x) * grid.y)));
}

// The engine: OS threads by default under ThreadSanitizer (which then sees the real threads and
// barriers), fibers otherwise; PF_EMU_ENGINE=threads or =fibers chooses.
inline bool use_threads() {
  static const bool threads = [] {
    const char* engine = std::getenv("PF_EMU_ENGINE");
    if (engine) return std::string(engine) == "threads";
#if defined(__SANITIZE_THREAD__)
    return true;
#else
    return false;
#endif
  }();
  return threads;
}

// Thread engine: one OS thread per CUDA thread, for the whole launch; blocks one after another,
// separated by a barrier whose last arrival checks the block and poisons shared memory.
inline void run_threads(LaunchState& launch) {
  const uint64_t blocks = uint64_t(launch.grid.x) * launch.grid.y * launch.grid.z;
  auto worker = [&](unsigned int t) {
    current_launch = &launch;
    current_thread = t;
    gridDim = launch.grid;
    blockDim = launch.block;
    threadIdx = unlinear(t, launch.block);
    for (uint64_t b = 0; b < blocks && launch.failure.empty(); ++b) {
      blockIdx = block_index(b, launch.grid);
      (*launch.body)();
      launch.sync.drop();
      const dim3 index = blockIdx;
      launch.boundary.arrive_and_wait([&] { finish_block(launch, index); });
    }
    current_launch = nullptr;
  };
  std::vector<std::thread> threads;
  threads.reserve(launch.threads);
  for (unsigned int t = 0; t < launch.threads; ++t) threads.emplace_back(worker, t);
  for (std::thread& thread : threads) thread.join();
}

// Fiber stacks, kept for later launches (mmap: untouched pages cost nothing).
inline std::deque<Fiber>& fiber_pool(unsigned int count) {
  static thread_local std::deque<Fiber> pool;
  constexpr size_t kStack = 512 * 1024;
  while (pool.size() < count) {
    Fiber& fiber = pool.emplace_back();
    fiber.stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (fiber.stack == MAP_FAILED) std::abort();
    fiber.stack_bytes = kStack;
    getcontext(&fiber.context);  // once, in place: makecontext reuses it for every block
  }
  return pool;
}

inline void fiber_main() {
  LaunchState& launch = *current_launch;
  Fiber& fiber = (*launch.fibers)[current_thread];
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(nullptr, &launch.scheduler_stack, &launch.scheduler_stack_bytes);
#endif
  (*launch.body)();
  fiber.done = true;
  yield_to_scheduler(launch, fiber, true);  // never resumed
}

// Fiber engine: the CUDA threads of a block are user-level contexts on the calling thread. The
// scheduler runs thread 0, 1, ... each until its next __syncthreads (or its end), and repeats
// until every thread has finished: a barrier phase ends when every live thread reached it, as on
// the GPU, and the order within a phase is fixed, so runs are reproducible.
inline void run_fibers(LaunchState& launch) {
  std::deque<Fiber>& fibers = fiber_pool(launch.threads);
  launch.fibers = &fibers;
  current_launch = &launch;
  gridDim = launch.grid;
  blockDim = launch.block;
  const uint64_t blocks = uint64_t(launch.grid.x) * launch.grid.y * launch.grid.z;
  for (uint64_t b = 0; b < blocks && launch.failure.empty(); ++b) {
    blockIdx = block_index(b, launch.grid);
    for (unsigned int t = 0; t < launch.threads; ++t) {
      Fiber& fiber = fibers[t];
      fiber.context.uc_stack.ss_sp = fiber.stack;
      fiber.context.uc_stack.ss_size = fiber.stack_bytes;
      fiber.context.uc_link = nullptr;
      makecontext(&fiber.context, fiber_main, 0);
      fiber.done = false;
    }
    for (unsigned int live = launch.threads; live > 0;) {
      for (unsigned int t = 0; t < launch.threads; ++t) {
        Fiber& fiber = fibers[t];
        if (fiber.done) continue;
        current_thread = t;
        threadIdx = unlinear(t, launch.block);
#if defined(__SANITIZE_ADDRESS__)
        __sanitizer_start_switch_fiber(&launch.scheduler_fake_stack, fiber.stack, fiber.stack_bytes);
#endif
        swapcontext(&launch.scheduler, &fiber.context);
#if defined(__SANITIZE_ADDRESS__)
        __sanitizer_finish_switch_fiber(launch.scheduler_fake_stack, nullptr, nullptr);
#endif
        if (fiber.done) --live;
      }
    }
    finish_block(launch, blockIdx);
  }
  current_launch = nullptr;
  launch.fibers = nullptr;
}

// Runs `body` (the kernel applied to its arguments) for every thread of every block.
inline void run_launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem,
                       const std::function<void()>& body) {
  const std::string bad = invalid_configuration(grid, block);
  if (!bad.empty()) {
    set_error(cudaErrorInvalidConfiguration, std::string("invalid launch of ") + name + ": " + bad);
    return;
  }
  const size_t limit = smem_limit(kernel);
  if (smem > limit) {
    set_error(cudaErrorInvalidValue, std::string("invalid launch of ") + name + ": " + std::to_string(smem) +
                                         " bytes of dynamic shared memory, over the kernel's limit of " +
                                         std::to_string(limit) + " (raise it with cudaFuncSetAttribute)");
    return;
  }
  Runtime& r = runtime();
  std::lock_guard<std::mutex> serial(r.launch_mutex);
  LaunchState launch;
  launch.name = name;
  launch.kernel = kernel;
  launch.grid = grid;
  launch.block = block;
  launch.threads = block.x * block.y * block.z;
  launch.barriers_passed.assign(launch.threads, 0);
  launch.sync.reset(launch.threads);
  launch.boundary.reset(launch.threads);
  // Exactly the requested size on the heap, so AddressSanitizer reports any access past it.
  unsigned char* dynamic = smem ? static_cast<unsigned char*>(::operator new(smem, std::align_val_t(256))) : nullptr;
  launch.dynamic_smem = dynamic;
  launch.dynamic_bytes = smem;
  if (dynamic) std::memset(dynamic, kPoison, smem);
  {
    // Poison the kernel's static shared arrays (registered by an earlier launch) before block 0.
    std::lock_guard<std::mutex> lock(r.state_mutex);
    for (const Region& region : r.statics[kernel]) std::memset(region.data, kPoison, region.bytes);
  }
  launch.body = &body;
  if (use_threads())
    run_threads(launch);
  else
    run_fibers(launch);
  if (dynamic) ::operator delete(dynamic, std::align_val_t(256));
  if (!launch.failure.empty()) set_error(cudaErrorLaunchFailure, launch.failure);
}

// `launch(name, kernel, grid, block, smem, stream)(args...)`: the rewritten triple-chevron launch.
template <typename... P>
struct Launch {
  const char* name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // Converted once, as a call converts its arguments; every thread copies them into its own
    // parameters, as every CUDA thread sees its own copy.
    const std::tuple<P...> params(std::forward<A>(args)...);
    const auto kernel_fn = kernel;
    run_launch(name, reinterpret_cast<const void*>(kernel_fn), grid, block, smem,
               [&] { std::apply(kernel_fn, params); });
  }
};

template <typename... P>
Launch<P...> launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                    cudaStream_t = nullptr) {
  return Launch<P...>{name, kernel, grid, block, smem};
}

template <typename... T>
constexpr bool unsupported = false;

// warpSize: any use is a compile error (see warp intrinsics below).
struct WarpSize {
  template <typename T>
  operator T() const {
    static_assert(unsupported<T>, "warpSize: warp-level behaviour is not emulated (tests/cuda_emulation/README.md)");
    return T();
  }
};

}  // namespace pf_emu

// --- device functions ------------------------------------------------------------------------------

inline void __syncthreads() { pf_emu::syncthreads(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T>
T atomicSub(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_sub(value);
}
template <typename T>
T atomicExch(T* address, T value) {
  return std::atomic_ref<T>(*address).exchange(value);
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
  return compare;  // the old value either way
}
template <typename T>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (old < value && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (value < old && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}

// CUDA's integer min/max overloads, for calls the host's std::min cannot take (mixed types follow
// the usual arithmetic conversions).
template <typename A, typename B>
constexpr auto min(A a, B b) -> decltype(a + b) {
  return b < a ? b : a;
}
template <typename A, typename B>
constexpr auto max(A a, B b) -> decltype(a + b) {
  return a < b ? b : a;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }

// Warp-level intrinsics: a compile error naming the intrinsic, until they are emulated properly
// (a warp would need lockstep groups of 32 threads and the mask semantics).
#define PF_EMU_WARP_INTRINSIC(name)                                                                   \
  template <typename... A>                                                                            \
  unsigned int name(A...) {                                                                           \
    static_assert(pf_emu::unsupported<A...>,                                                          \
                  #name ": warp-level intrinsics are not emulated (tests/cuda_emulation/README.md)"); \
    return 0;                                                                                         \
  }
PF_EMU_WARP_INTRINSIC(__shfl_sync)
PF_EMU_WARP_INTRINSIC(__shfl_up_sync)
PF_EMU_WARP_INTRINSIC(__shfl_down_sync)
PF_EMU_WARP_INTRINSIC(__shfl_xor_sync)
PF_EMU_WARP_INTRINSIC(__shfl)
PF_EMU_WARP_INTRINSIC(__shfl_up)
PF_EMU_WARP_INTRINSIC(__shfl_down)
PF_EMU_WARP_INTRINSIC(__shfl_xor)
PF_EMU_WARP_INTRINSIC(__ballot_sync)
PF_EMU_WARP_INTRINSIC(__ballot)
PF_EMU_WARP_INTRINSIC(__any_sync)
PF_EMU_WARP_INTRINSIC(__all_sync)
PF_EMU_WARP_INTRINSIC(__uni_sync)
PF_EMU_WARP_INTRINSIC(__any)
PF_EMU_WARP_INTRINSIC(__all)
PF_EMU_WARP_INTRINSIC(__activemask)
PF_EMU_WARP_INTRINSIC(__syncwarp)
PF_EMU_WARP_INTRINSIC(__match_any_sync)
PF_EMU_WARP_INTRINSIC(__match_all_sync)
PF_EMU_WARP_INTRINSIC(__reduce_add_sync)
PF_EMU_WARP_INTRINSIC(__reduce_min_sync)
PF_EMU_WARP_INTRINSIC(__reduce_max_sync)
PF_EMU_WARP_INTRINSIC(__reduce_and_sync)
PF_EMU_WARP_INTRINSIC(__reduce_or_sync)
PF_EMU_WARP_INTRINSIC(__reduce_xor_sync)
#undef PF_EMU_WARP_INTRINSIC
inline constexpr pf_emu::WarpSize warpSize{};

// --- runtime API -------------------------------------------------------------------------------------

inline cudaError_t cudaGetLastError() {
  pf_emu::Runtime& r = pf_emu::runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  const cudaError_t error = r.last_error;
  r.last_error = cudaSuccess;  // like CUDA: reading the error resets it
  return error;
}

inline cudaError_t cudaPeekAtLastError() {
  pf_emu::Runtime& r = pf_emu::runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  return r.last_error;
}

// CUDA's short description, followed by what the emulation saw when it detected the error.
inline const char* cudaGetErrorString(cudaError_t error) {
  static thread_local std::string text;
  const char* base = "unknown error";
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      base = "invalid argument";
      break;
    case cudaErrorMemoryAllocation:
      base = "out of memory";
      break;
    case cudaErrorInvalidConfiguration:
      base = "invalid configuration argument";
      break;
    case cudaErrorLaunchFailure:
      base = "unspecified launch failure";
      break;
  }
  pf_emu::Runtime& r = pf_emu::runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  text = base;
  if (r.message_error == error && !r.last_message.empty()) {
    text += " [emulation: " + r.last_message + "]";
    r.last_message.clear();  // explains one error, not a later one with the same code
  }
  return text.c_str();
}

template <typename Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attribute, int value) {
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > pf_emu::kMaxOptInSmem) {
    pf_emu::set_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                                 " bytes of dynamic shared memory is over the device's " +
                                                 std::to_string(pf_emu::kMaxOptInSmem));
    return cudaErrorInvalidValue;
  }
  pf_emu::Runtime& r = pf_emu::runtime();
  std::lock_guard<std::mutex> lock(r.state_mutex);
  r.smem_limit[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(value);
  return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
