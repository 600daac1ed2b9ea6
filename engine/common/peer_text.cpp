#include "common/peer_text.hpp"

namespace bnf {

std::string printable_peer_text(std::string_view text, size_t max_len) {
  constexpr std::string_view kCut = "...";
  const bool cut = text.size() > max_len;
  const size_t keep = cut ? (max_len > kCut.size() ? max_len - kCut.size() : 0) : text.size();
  std::string out;
  out.reserve(keep + (cut ? kCut.size() : 0));
  for (size_t i = 0; i < keep; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (cut) out.append(kCut);
  return out;
}

}  // namespace bnf
