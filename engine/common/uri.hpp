// Endpoint URIs: "bnf+tcp:HOST:PORT", "bnf+tcp://HOST:PORT", "bnf+mem:NAME".
#pragma once

#include <cstdint>
#include <string>

#include "common/status.hpp"

namespace bnf {

struct Endpoint {
  std::string scheme;  // "tcp", "mem" (the part after "bnf+")
  std::string host;    // host name or address; IPv6 written as [addr]
  uint16_t port = 0;
  [[nodiscard]] std::string to_string() const;
};

Result<Endpoint> parse_endpoint(std::string_view uri);

}  // namespace bnf
