// A registered region and the table a connection keeps of them.
//
// Connection::register_region returns a RegionHandle, as NIXL's registerMem
// returns a descriptor: the caller owns the registration through it, the
// connection owns its own record of the region. The handle is move-only;
// releasing it (destruction, reset(), move-assignment over it) deregisters the
// region once, after which later posts copy those bytes. Parts already posted
// still follow post()'s rule: unchanged until flush() returns.
//
// Lifetime: the handle reaches its connection only through its release
// callback, which a transport builds on a weak reference (RegionTable below),
// so a handle that outlives its connection releases nothing rather than
// touching freed memory. The caller keeps the region's bytes mapped while the
// handle lives. Registering, releasing and posting happen on the thread that
// sends on the connection.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace bnf::transport {

class RegionHandle {
 public:
  using Release = std::function<void()>;

  RegionHandle() = default;
  // `id` is the transport's own name for the region; `remote` is what a peer
  // needs to address it (an RDMA rkey; empty where nothing is addressed remotely).
  RegionHandle(std::span<const std::byte> bytes, uint64_t id, std::vector<std::byte> remote, Release release)
      : bytes_(bytes), id_(id), remote_(std::move(remote)), release_(std::move(release)) {}
  ~RegionHandle() { reset(); }

  RegionHandle(const RegionHandle&) = delete;
  RegionHandle& operator=(const RegionHandle&) = delete;
  RegionHandle(RegionHandle&& o) noexcept
      : bytes_(std::exchange(o.bytes_, {})),
        id_(std::exchange(o.id_, 0)),
        remote_(std::move(o.remote_)),
        release_(std::exchange(o.release_, nullptr)) {}
  RegionHandle& operator=(RegionHandle&& o) noexcept {
    if (this != &o) {
      reset();
      bytes_ = std::exchange(o.bytes_, {});
      id_ = std::exchange(o.id_, 0);
      remote_ = std::move(o.remote_);
      release_ = std::exchange(o.release_, nullptr);
    }
    return *this;
  }

  // Deregisters now; the handle is empty afterwards.
  void reset() noexcept {
    if (release_) std::exchange(release_, nullptr)();
    bytes_ = {};
    id_ = 0;
    remote_.clear();
  }

  // Whether the handle holds a registration (a moved-from or reset one does not).
  [[nodiscard]] bool registered() const noexcept { return id_ != 0; }
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
  [[nodiscard]] uint64_t id() const noexcept { return id_; }
  [[nodiscard]] std::span<const std::byte> remote_descriptor() const noexcept { return remote_; }

 private:
  std::span<const std::byte> bytes_;
  uint64_t id_ = 0;  // 0: no registration
  std::vector<std::byte> remote_;
  Release release_;
};

// The regions a connection sends from without a copy. The connection holds
// the only strong reference; each handle's release holds a weak one, so a
// release after the connection is gone finds nothing to do.
class RegionTable : public std::enable_shared_from_this<RegionTable> {
 public:
  [[nodiscard]] RegionHandle add(std::span<const std::byte> region, std::vector<std::byte> remote = {}) {
    const uint64_t id = next_id_++;
    entries_.push_back({id, region});
    return {region, id, std::move(remote), [table = weak_from_this(), id] {
              if (const std::shared_ptr<RegionTable> t = table.lock()) t->remove(id);
            }};
  }

  // Whether [data, data+size) lies wholly inside one registered region.
  [[nodiscard]] bool contains(const std::byte* data, size_t size) const noexcept {
    return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) {
      return data >= e.bytes.data() && data + size <= e.bytes.data() + e.bytes.size();
    });
  }
  [[nodiscard]] size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    uint64_t id;
    std::span<const std::byte> bytes;
  };
  void remove(uint64_t id) noexcept {
    std::erase_if(entries_, [id](const Entry& e) { return e.id == id; });
  }
  std::vector<Entry> entries_;
  uint64_t next_id_ = 1;
};

}  // namespace bnf::transport
