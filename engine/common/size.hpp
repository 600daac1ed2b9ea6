// Sizes on the command line: "1G", "512M", "64K" (binary units) or plain bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.hpp"

namespace bnf {

Result<uint64_t> parse_size(std::string_view s);
// "64 TiB", "63 MiB", "1.5 GiB", "512 bytes": the largest binary unit, one decimal at most.
std::string format_size(uint64_t bytes);

}  // namespace bnf
