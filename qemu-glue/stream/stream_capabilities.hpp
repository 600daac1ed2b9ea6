// The migration capabilities a QEMU 7.2 stream names in its configuration
// section (configuration/capabilities): a stream made with x-ignore-shared
// loads only into a QEMU that has the capability too (`bnf restore`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

// The capabilities named at the start of `stream`; none if it has no such
// subsection. A stream that is not QEMU's, or cut short there, is an error.
Result<std::vector<std::string>> stream_capabilities(std::string_view stream);

}  // namespace bnf::qemu
