// QEMU 7.2 migration stream codec (see docs/qemu-stream.md): parses the stream
// as it flows from the source QEMU, hands every RAM page record to a PageHandler
// which keeps it in the stream or takes it out (to land it elsewhere), and
// writes the rewritten stream for the destination QEMU. Device state is
// forwarded byte for byte. Anything the codec does not understand (multifd,
// compression, XBZRLE, postcopy, unknown sections) is refused by name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.hpp"
#include "stream/stream_io.hpp"

namespace bnf::qemu {

struct RamBlockInfo {
  std::string name;
  uint64_t used_length = 0;
};

class PageHandler {
 public:
  virtual ~PageHandler() = default;
  // Called once, with the blocks announced at the start of RAM migration.
  virtual Status on_blocks(const std::vector<RamBlockInfo>& blocks) = 0;
  // A PAGE record: return true to keep it in the stream, false to take it out.
  virtual Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte* data) = 0;
  // A ZERO record: return true to keep it, false when the handler zeroes the page
  // itself (a kept ZERO record arriving after the page was landed anew would
  // wipe it on the destination).
  virtual Result<bool> on_zero(const std::string& block, uint64_t offset) = 0;
  // Called when QEMU's final RAM section begins: the VM is stopped from here on.
  virtual Status on_final_ram_section() { return Status::ok(); }
  // Called once, before the first byte of device state is written: the last
  // moment to deliver pages the handler took out and has not delivered yet.
  virtual Status before_device_state() { return Status::ok(); }
};

struct RewriteStats {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t pages = 0;          // PAGE records seen
  uint64_t pages_removed = 0;  // ... taken out of the stream
  uint64_t zero_pages = 0;     // ZERO records seen
  uint64_t zero_removed = 0;   // ... taken out of the stream
  uint64_t ram_sections = 0;   // ram START/PART/END sections
  uint64_t device_bytes = 0;   // device state forwarded verbatim
};

class StreamRewriter {
 public:
  StreamRewriter(FdSource& in, ByteSink& out, PageHandler& pages) : in_(in), out_(out), pages_(pages) {}
  // Shared mode: the stream may carry x-ignore-shared (bnf moves the shared
  // block itself); otherwise a stream without RAM pages is refused.
  void allow_ignore_shared() { allow_ignore_shared_ = true; }
  // Runs until the source's EOF; returns the first error with its cause.
  Status run();
  [[nodiscard]] const RewriteStats& stats() const { return stats_; }

 private:
  Status header();
  Status configuration();
  Status command();
  Status section(uint8_t type);
  Status ram_records();
  Status mem_size(uint64_t total);
  Status read_idstr(std::string& s, const char* what);
  Status emit_record_head(uint64_t offset, uint64_t flags, const std::string& block);
  Status put(const void* p, size_t n);
  template <typename T>
  Result<T> get_be(const char* what);

  FdSource& in_;
  ByteSink& out_;
  PageHandler& pages_;
  RewriteStats stats_;
  uint32_t ram_section_id_ = UINT32_MAX;
  std::string in_block_;   // block of the last record read (CONTINUE refers to it)
  std::string out_block_;  // block of the last record written
  std::vector<RamBlockInfo> blocks_;
  bool allow_ignore_shared_ = false;
  bool ignore_shared_ = false;  // the stream's capabilities name x-ignore-shared
};

}  // namespace bnf::qemu
