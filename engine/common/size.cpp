#include "common/size.hpp"

#include <charconv>

namespace bnf {

Result<uint64_t> parse_size(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr == s.data()) return Status(Errc::invalid_argument, "bad size '" + std::string(s) + "'");
  const std::string_view unit(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
  int shift = 0;
  if (unit == "K" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else if (!unit.empty()) return Status(Errc::invalid_argument, "bad size unit in '" + std::string(s) + "'");
  if (v > (UINT64_MAX >> shift)) return Status(Errc::invalid_argument, "size too large: " + std::string(s));
  return v << shift;
}

}  // namespace bnf
