// Sizes on the command line: "1G", "512M", "64K" (binary units) or plain bytes.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.hpp"

namespace bnf {

Result<uint64_t> parse_size(std::string_view s);

}  // namespace bnf
