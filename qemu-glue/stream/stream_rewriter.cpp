#include "stream/stream_rewriter.hpp"

#include <fmt/format.h>

#include <array>

#include "common/page.hpp"

namespace bnf::qemu {

namespace {
constexpr uint32_t kMagic = 0x5145564d;  // "QEVM"
constexpr uint32_t kVersion = 3;

enum : uint8_t {
  kEof = 0x00,
  kSectionStart = 0x01,
  kSectionPart = 0x02,
  kSectionEnd = 0x03,
  kSectionFull = 0x04,
  kSubsection = 0x05,
  kVmDescription = 0x06,
  kConfiguration = 0x07,
  kCommand = 0x08,
  kFooter = 0x7e,
};

enum : uint64_t {
  kFlagZero = 0x02,
  kFlagMemSize = 0x04,
  kFlagPage = 0x08,
  kFlagEos = 0x10,
  kFlagContinue = 0x20,
  kFlagXbzrle = 0x40,
  kFlagHook = 0x80,
  kFlagCompress = 0x100,
  kFlagMask = kPageSize - 1,
};

Status refuse(const std::string& what) { return {Errc::invalid_argument, "unsupported migration stream: " + what}; }
}  // namespace

Status StreamRewriter::put(const void* p, size_t n) {
  stats_.bytes_out += n;
  return out_.write({static_cast<const std::byte*>(p), n});
}

template <typename T>
Result<T> StreamRewriter::get_be(const char* what) {
  std::array<std::byte, sizeof(T)> b{};
  BNF_TRY(in_.read(b, what));
  T v = 0;
  for (std::byte x : b) v = static_cast<T>((v << 8) | static_cast<T>(x));
  return v;
}

template <typename T>
static std::array<std::byte, sizeof(T)> be(T v) {
  std::array<std::byte, sizeof(T)> b{};
  for (size_t i = 0; i < sizeof(T); ++i) b[sizeof(T) - 1 - i] = static_cast<std::byte>(v >> (8 * i));
  return b;
}

Status StreamRewriter::read_idstr(std::string& s, const char* what) {
  BNF_ASSIGN_OR_RETURN(uint8_t len, get_be<uint8_t>(what));
  s.assign(len, '\0');
  return in_.read(std::as_writable_bytes(std::span(s)), what);
}

Status StreamRewriter::run() {
  BNF_TRY(header());
  while (true) {
    uint8_t type = 0;
    BNF_ASSIGN_OR_RETURN(bool more, in_.peek(type));
    if (!more) return {Errc::protocol, "migration stream ended before device state"};
    if (type == kSectionFull) break;  // from here on: device state, verbatim
    BNF_TRY(in_.read(std::span<std::byte>(reinterpret_cast<std::byte*>(&type), 1), "record type"));
    BNF_TRY(put(&type, 1));
    if (type == kConfiguration) {
      BNF_TRY(configuration());
    } else if (type == kCommand) {
      BNF_TRY(command());
    } else if (type >= kSectionStart && type <= kSectionEnd) {
      BNF_TRY(section(type));
    } else {
      return refuse(fmt::format("record type 0x{:02x} before device state", type));
    }
  }
  BNF_TRY(pages_.before_device_state());
  BNF_TRY(out_.before_device_state());
  // Device state goes on as it comes: with its return path open, QEMU ends the
  // stream only after the destination, having loaded it all, said so.
  BNF_TRY(in_.drain([&](std::span<const std::byte> chunk) {
    stats_.device_bytes += chunk.size();
    BNF_TRY(put(chunk.data(), chunk.size()));
    return out_.flush();
  }));
  BNF_TRY(out_.flush());
  stats_.bytes_in = in_.consumed();
  return Status::ok();
}

Status StreamRewriter::header() {
  BNF_ASSIGN_OR_RETURN(uint32_t magic, get_be<uint32_t>("stream header"));
  BNF_ASSIGN_OR_RETURN(uint32_t version, get_be<uint32_t>("stream header"));
  if (magic != kMagic) return {Errc::protocol, "not a QEMU migration stream (bad magic)"};
  if (version != kVersion) return refuse(fmt::format("stream version {} (expected 3)", version));
  BNF_TRY(put(be(magic).data(), 4));
  return put(be(version).data(), 4);
}

// Machine type name, then subsections whose layouts are known from QEMU 7.2.
Status StreamRewriter::configuration() {
  BNF_ASSIGN_OR_RETURN(uint32_t len, get_be<uint32_t>("configuration"));
  if (len > 256) return {Errc::protocol, "configuration: machine name too long"};
  std::string name(len, '\0');
  BNF_TRY(in_.read(std::as_writable_bytes(std::span(name)), "configuration"));
  BNF_TRY(put(be(len).data(), 4));
  BNF_TRY(put(name.data(), name.size()));
  uint8_t next = 0;
  while (true) {
    BNF_ASSIGN_OR_RETURN(bool more, in_.peek(next));
    if (!more || next != kSubsection) return Status::ok();
    BNF_TRY(in_.read(std::span<std::byte>(reinterpret_cast<std::byte*>(&next), 1), "subsection"));
    std::string sub;
    BNF_TRY(read_idstr(sub, "configuration subsection"));
    BNF_ASSIGN_OR_RETURN(uint32_t ver, get_be<uint32_t>("configuration subsection"));
    size_t payload = 0;
    std::vector<std::byte> body;
    if (sub == "configuration/target-page-bits") {
      payload = 4;
    } else if (sub == "configuration/uuid") {
      payload = 16;
    } else if (sub == "configuration/capabilities") {
      BNF_ASSIGN_OR_RETURN(uint32_t count, get_be<uint32_t>("capabilities"));
      auto c = be(count);
      body.insert(body.end(), c.begin(), c.end());
      for (uint32_t i = 0; i < count; ++i) {
        std::string cap;
        BNF_TRY(read_idstr(cap, "capability"));
        if (cap == "x-ignore-shared" && !allow_ignore_shared_)
          return refuse("capability x-ignore-shared (stream mode sends RAM)");
        if (cap == "x-ignore-shared") ignore_shared_ = true;
        body.push_back(static_cast<std::byte>(cap.size()));
        for (char ch : cap) body.push_back(static_cast<std::byte>(ch));
      }
    } else {
      return refuse("configuration subsection '" + sub + "'");
    }
    const size_t at = body.size();
    body.resize(at + payload);
    BNF_TRY(in_.read(std::span(body).subspan(at), "configuration subsection"));
    const uint8_t sub_len = static_cast<uint8_t>(sub.size());
    BNF_TRY(put(&next, 1));
    BNF_TRY(put(&sub_len, 1));
    BNF_TRY(put(sub.data(), sub.size()));
    BNF_TRY(put(be(ver).data(), 4));
    BNF_TRY(put(body.data(), body.size()));
  }
}

Status StreamRewriter::command() {
  BNF_ASSIGN_OR_RETURN(uint16_t cmd, get_be<uint16_t>("command"));
  BNF_ASSIGN_OR_RETURN(uint16_t len, get_be<uint16_t>("command"));
  // 1 OPEN_RETURN_PATH, 2 PING; postcopy (3 ADVISE and later) needs a discarded destination.
  if (cmd != 1 && cmd != 2) return refuse(fmt::format("command {} (postcopy is not supported)", cmd));
  std::vector<std::byte> payload(len);
  BNF_TRY(in_.read(payload, "command"));
  BNF_TRY(put(be(cmd).data(), 2));
  BNF_TRY(put(be(len).data(), 2));
  return put(payload.data(), payload.size());
}

Status StreamRewriter::section(uint8_t type) {
  BNF_ASSIGN_OR_RETURN(uint32_t id, get_be<uint32_t>("section header"));
  BNF_TRY(put(be(id).data(), 4));
  if (type == kSectionStart) {
    std::string idstr;
    BNF_TRY(read_idstr(idstr, "section header"));
    BNF_ASSIGN_OR_RETURN(uint32_t instance, get_be<uint32_t>("section header"));
    BNF_ASSIGN_OR_RETURN(uint32_t version, get_be<uint32_t>("section header"));
    if (idstr != "ram") return refuse("iterative section '" + idstr + "' (block migration?)");
    if (version != 4) return refuse(fmt::format("ram section version {}", version));
    ram_section_id_ = id;
    const auto n = static_cast<uint8_t>(idstr.size());
    BNF_TRY(put(&n, 1));
    BNF_TRY(put(idstr.data(), idstr.size()));
    BNF_TRY(put(be(instance).data(), 4));
    BNF_TRY(put(be(version).data(), 4));
  } else if (id != ram_section_id_) {
    return refuse(fmt::format("section {} is not the ram section", id));
  }
  ++stats_.ram_sections;
  if (type == kSectionEnd) BNF_TRY(pages_.on_final_ram_section());
  BNF_TRY(ram_records());
  BNF_ASSIGN_OR_RETURN(uint8_t footer, get_be<uint8_t>("section footer"));
  BNF_ASSIGN_OR_RETURN(uint32_t footer_id, get_be<uint32_t>("section footer"));
  if (footer != kFooter || footer_id != id) return {Errc::protocol, "ram section footer missing or wrong"};
  BNF_TRY(put(&footer, 1));
  return put(be(footer_id).data(), 4);
}

Status StreamRewriter::emit_record_head(uint64_t offset, uint64_t flags, const std::string& block) {
  // CONTINUE means "same block as the last record the destination read": after a
  // removed record that may no longer hold, so the rule is recomputed on output.
  const bool cont = !out_block_.empty() && out_block_ == block;
  const uint64_t cont_flag = cont ? static_cast<uint64_t>(kFlagContinue) : 0;
  const uint64_t head = offset | (flags & ~static_cast<uint64_t>(kFlagContinue)) | cont_flag;
  BNF_TRY(put(be(head).data(), 8));
  if (!cont) {
    const auto n = static_cast<uint8_t>(block.size());
    BNF_TRY(put(&n, 1));
    BNF_TRY(put(block.data(), block.size()));
    out_block_ = block;
  }
  return Status::ok();
}

Status StreamRewriter::mem_size(uint64_t total) {
  blocks_.clear();
  uint64_t sum = 0;
  while (sum < total) {
    RamBlockInfo b;
    BNF_TRY(read_idstr(b.name, "ram block list"));
    BNF_ASSIGN_OR_RETURN(b.used_length, get_be<uint64_t>("ram block list"));
    const auto n = static_cast<uint8_t>(b.name.size());
    BNF_TRY(put(&n, 1));
    BNF_TRY(put(b.name.data(), b.name.size()));
    BNF_TRY(put(be(b.used_length).data(), 8));
    if (ignore_shared_) {  // with x-ignore-shared every block's guest address follows
      BNF_ASSIGN_OR_RETURN(uint64_t gpa, get_be<uint64_t>("ram block list"));
      BNF_TRY(put(be(gpa).data(), 8));
    }
    sum += b.used_length;
    blocks_.push_back(std::move(b));
  }
  if (sum != total) return {Errc::protocol, "ram block list does not add up to the announced size"};
  return pages_.on_blocks(blocks_);
}

Status StreamRewriter::ram_records() {
  while (true) {
    BNF_ASSIGN_OR_RETURN(uint64_t head, get_be<uint64_t>("ram record"));
    const uint64_t flags = head & kFlagMask;
    const uint64_t offset = head & ~kFlagMask;
    if ((flags & (kFlagXbzrle | kFlagCompress | kFlagHook)) != 0)
      return refuse(fmt::format("ram record flags 0x{:x} (compression, XBZRLE and RDMA are not supported)", flags));
    if ((flags & ~(kFlagZero | kFlagMemSize | kFlagPage | kFlagEos | kFlagContinue)) != 0)
      return refuse(fmt::format("ram record flags 0x{:x} (multifd?)", flags));
    if ((flags & kFlagMemSize) != 0) {
      BNF_TRY(put(be(head).data(), 8));
      BNF_TRY(mem_size(offset));
      continue;
    }
    if ((flags & kFlagEos) != 0) {
      return put(be(head).data(), 8);
    }
    if ((flags & kFlagContinue) == 0) BNF_TRY(read_idstr(in_block_, "ram record block name"));
    if (in_block_.empty()) return {Errc::protocol, "ram record continues a block never named"};
    if ((flags & kFlagZero) != 0) {
      BNF_ASSIGN_OR_RETURN(uint8_t fill, get_be<uint8_t>("zero page record"));
      if (fill != 0) return refuse("non-zero fill byte in a ZERO record");
      ++stats_.zero_pages;
      BNF_ASSIGN_OR_RETURN(bool keep, pages_.on_zero(in_block_, offset));
      if (!keep) {
        ++stats_.zero_removed;
        continue;
      }
      BNF_TRY(emit_record_head(offset, flags, in_block_));
      BNF_TRY(put(&fill, 1));
    } else if ((flags & kFlagPage) != 0) {
      BNF_ASSIGN_OR_RETURN(const std::byte* page, in_.view(kPageSize, "page record"));
      ++stats_.pages;
      BNF_ASSIGN_OR_RETURN(bool keep, pages_.on_page(in_block_, offset, page));
      if (!keep) {
        ++stats_.pages_removed;
        continue;
      }
      BNF_TRY(emit_record_head(offset, flags, in_block_));
      BNF_TRY(put(page, kPageSize));
    } else {
      return {Errc::protocol, fmt::format("ram record with flags 0x{:x} carries nothing", flags)};
    }
  }
}

}  // namespace bnf::qemu
