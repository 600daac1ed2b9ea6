#include "stream/stream_capabilities.hpp"

#include <cstdint>

namespace bnf::qemu {

namespace {

constexpr uint32_t kMagic = 0x5145564d;  // "QEVM"
constexpr uint8_t kConfiguration = 0x07;
constexpr uint8_t kSubsection = 0x05;

// Reads big-endian fields and length-prefixed names off the front of a stream.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  Result<uint64_t> be(size_t bytes) {
    if (s_.size() < bytes) return cut();
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(s_[i]);
    s_.remove_prefix(bytes);
    return v;
  }
  Result<std::string> bytes(size_t n) {
    if (s_.size() < n) return cut();
    std::string out(s_.substr(0, n));
    s_.remove_prefix(n);
    return out;
  }
  Result<std::string> idstr() {
    BNF_ASSIGN_OR_RETURN(uint64_t n, be(1));
    return bytes(n);
  }
  [[nodiscard]] bool next_is(uint8_t b) const { return !s_.empty() && static_cast<uint8_t>(s_[0]) == b; }

 private:
  static Status cut() { return {Errc::corrupt, "the stream ends inside its configuration section"}; }
  std::string_view s_;
};

}  // namespace

Result<std::vector<std::string>> stream_capabilities(std::string_view stream) {
  Reader r(stream);
  BNF_ASSIGN_OR_RETURN(uint64_t magic, r.be(4));
  if (magic != kMagic) return Status(Errc::corrupt, "not a QEMU migration stream (bad magic)");
  BNF_TRY(r.be(4).status());  // version
  std::vector<std::string> caps;
  if (!r.next_is(kConfiguration)) return caps;
  BNF_TRY(r.be(1).status());
  BNF_ASSIGN_OR_RETURN(uint64_t name_len, r.be(4));
  BNF_TRY(r.bytes(name_len).status());  // machine type
  while (r.next_is(kSubsection)) {
    BNF_TRY(r.be(1).status());
    BNF_ASSIGN_OR_RETURN(std::string sub, r.idstr());
    BNF_TRY(r.be(4).status());  // the subsection's version
    if (sub == "configuration/capabilities") {
      BNF_ASSIGN_OR_RETURN(uint64_t count, r.be(4));
      for (uint64_t i = 0; i < count; ++i) {
        BNF_ASSIGN_OR_RETURN(std::string cap, r.idstr());
        caps.push_back(std::move(cap));
      }
    } else if (sub == "configuration/target-page-bits") {
      BNF_TRY(r.be(4).status());
    } else if (sub == "configuration/uuid") {
      BNF_TRY(r.bytes(16).status());
    } else {
      break;  // a layout not known here: what came before is all it can tell
    }
  }
  return caps;
}

}  // namespace bnf::qemu
