#include "common/size.hpp"

#include <fmt/format.h>

#include <charconv>

namespace bnf {

Result<uint64_t> parse_size(std::string_view s) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr == s.data()) return Status(Errc::invalid_argument, "bad size '" + std::string(s) + "'");
  const std::string_view unit(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
  int shift = 0;
  if (unit == "K" || unit == "KiB")
    shift = 10;
  else if (unit == "M" || unit == "MiB")
    shift = 20;
  else if (unit == "G" || unit == "GiB")
    shift = 30;
  else if (!unit.empty())
    return Status(Errc::invalid_argument, "bad size unit in '" + std::string(s) + "'");
  if (v > (UINT64_MAX >> shift)) return Status(Errc::invalid_argument, "size too large: " + std::string(s));
  return v << shift;
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  int unit = 0;
  while (unit + 1 < 6 && bytes >= (1024ULL << (10 * (unit + 1)))) ++unit;
  const double v = static_cast<double>(bytes) / static_cast<double>(1ULL << (10 * (unit + 1)));
  std::string n = fmt::format("{:.1f}", v);
  if (n.ends_with(".0")) n.resize(n.size() - 2);
  return n + " " + kUnits[unit];
}

}  // namespace bnf
