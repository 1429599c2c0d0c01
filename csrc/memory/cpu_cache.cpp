// A caching allocator for large CPU blocks, installed as c10's CPU allocator on request
// (pointformer/ops/cpu_cache.py says when and why).
//
// glibc maps every block over its mmap threshold (at most 32 MiB) afresh and unmaps it on free, so
// each forward of a detector page-faults its dense maps in again, and the kernel zeroes every page
// on first touch. This allocator keeps freed blocks of at least `min_block_bytes` and hands them out
// again (best fit, at most 1/8 larger than asked), up to `max_cached_bytes` of idle blocks; smaller
// requests go to the allocator it replaced. Blocks it handed out before being switched off are
// still returned to it, and then freed; idle blocks stay until cpu_cache_empty.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <pthread.h>
#include <torch/library.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace pointformer {
namespace {

class CachingCPUAllocator final : public c10::Allocator {
 public:
  static CachingCPUAllocator& instance() {
    static CachingCPUAllocator* allocator = new CachingCPUAllocator();  // never destroyed: blocks outlive main
    return *allocator;
  }

  c10::DataPtr allocate(size_t nbytes) override {
    // Only called while installed, so previous_ is set.
    if (nbytes < min_block_bytes_) return previous_->allocate(nbytes);
    void* ptr = nullptr;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      // Best fit among the idle blocks no more than 1/8 larger than the request.
      auto it = idle_.lower_bound(nbytes);
      if (it != idle_.end() && it->first <= nbytes + nbytes / 8) {
        ptr = it->second;
        cached_bytes_ -= it->first;
        live_[ptr] = it->first;
        idle_.erase(it);
        ++hits_;
      }
    }
    if (ptr == nullptr) {
      ptr = c10::alloc_cpu(nbytes);
      std::lock_guard<std::mutex> guard(mutex_);
      live_[ptr] = nbytes;
      ++misses_;
    }
    return {ptr, ptr, &CachingCPUAllocator::release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCPUAllocator::release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  // Installs (enabled) or restores the allocator this one replaced. Idle blocks stay for the next
  // enabling until empty() (so a benchmark can switch it per call); blocks returned while it is
  // off are freed. Returns {enabled, max_cached_bytes, min_block_bytes} as they were.
  std::vector<int64_t> configure(bool enabled, int64_t max_cached_bytes, int64_t min_block_bytes) {
    TORCH_CHECK(max_cached_bytes >= 0, "cpu_cache_configure: max_cached_bytes must be >= 0, got ", max_cached_bytes);
    TORCH_CHECK(min_block_bytes >= 1, "cpu_cache_configure: min_block_bytes must be >= 1, got ", min_block_bytes);
    std::vector<int64_t> before{enabled_ ? 1 : 0, static_cast<int64_t>(max_cached_bytes_),
                                static_cast<int64_t>(min_block_bytes_)};
    std::lock_guard<std::mutex> install(install_mutex_);
    {
      std::lock_guard<std::mutex> guard(mutex_);
      max_cached_bytes_ = static_cast<size_t>(max_cached_bytes);
      min_block_bytes_ = static_cast<size_t>(min_block_bytes);
    }
    if (enabled && !enabled_) {
      previous_ = c10::GetCPUAllocator();
      c10::SetCPUAllocator(this, /*priority=*/UINT8_MAX);
      enabled_ = true;
    } else if (!enabled && enabled_) {
      c10::SetCPUAllocator(previous_, /*priority=*/UINT8_MAX);
      enabled_ = false;
    }
    trim();
    return before;
  }

  // {hits, misses, idle cached bytes, bytes of blocks handed out and not yet returned, enabled}
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> guard(mutex_);
    int64_t live_bytes = 0;
    for (const auto& entry : live_) live_bytes += static_cast<int64_t>(entry.second);
    return {hits_, misses_, static_cast<int64_t>(cached_bytes_), live_bytes, enabled_ ? 1 : 0};
  }

  void empty() {
    std::multimap<size_t, void*> idle;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      idle.swap(idle_);
      cached_bytes_ = 0;
    }
    for (auto& entry : idle) c10::free_cpu(entry.second);
  }

 private:
  CachingCPUAllocator() {
    // A fork (DataLoader workers) must not copy the mutex while another thread holds it.
    pthread_atfork([] { instance().mutex_.lock(); }, [] { instance().mutex_.unlock(); },
                   [] { instance().mutex_.unlock(); });
  }

  static void release(void* ptr) {
    CachingCPUAllocator& self = instance();
    {
      std::lock_guard<std::mutex> guard(self.mutex_);
      auto it = self.live_.find(ptr);
      if (it != self.live_.end()) {
        const size_t size = it->second;
        self.live_.erase(it);
        if (self.enabled_ && self.cached_bytes_ + size <= self.max_cached_bytes_) {
          self.idle_.emplace(size, ptr);
          self.cached_bytes_ += size;
          return;
        }
      }
    }
    c10::free_cpu(ptr);
  }

  // Frees the largest idle blocks until the idle bytes fit max_cached_bytes.
  void trim() {
    std::vector<void*> freed;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      while (cached_bytes_ > max_cached_bytes_ && !idle_.empty()) {
        auto last = std::prev(idle_.end());
        cached_bytes_ -= last->first;
        freed.push_back(last->second);
        idle_.erase(last);
      }
    }
    for (void* ptr : freed) c10::free_cpu(ptr);
  }

  std::mutex mutex_;          // idle_, live_, counters, sizes
  std::mutex install_mutex_;  // configure
  std::multimap<size_t, void*> idle_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_bytes_ = 0;
  size_t max_cached_bytes_ = 0;
  size_t min_block_bytes_ = SIZE_MAX;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  bool enabled_ = false;
  c10::Allocator* previous_ = nullptr;
};

std::vector<int64_t> cpu_cache_configure(bool enabled, int64_t max_cached_bytes, int64_t min_block_bytes) {
  return CachingCPUAllocator::instance().configure(enabled, max_cached_bytes, min_block_bytes);
}

std::vector<int64_t> cpu_cache_stats() { return CachingCPUAllocator::instance().stats(); }

void cpu_cache_empty() { CachingCPUAllocator::instance().empty(); }

}  // namespace

TORCH_LIBRARY_IMPL(pointformer, CompositeImplicitAutograd, m) {
  m.impl("cpu_cache_configure", &cpu_cache_configure);
  m.impl("cpu_cache_stats", &cpu_cache_stats);
  m.impl("cpu_cache_empty", &cpu_cache_empty);
}

}  // namespace pointformer
