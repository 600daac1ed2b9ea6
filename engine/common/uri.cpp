#include "common/uri.hpp"

#include <charconv>

namespace bnf {

std::string Endpoint::to_string() const {
  if (scheme == "mem") return "bnf+mem:" + host;
  return "bnf+" + scheme + ":" + host + ":" + std::to_string(port);
}

static Status bad_uri(std::string_view uri, std::string_view why) {
  return {Errc::invalid_argument, "bad endpoint '" + std::string(uri) + "': " + std::string(why)};
}

Result<Endpoint> parse_endpoint(std::string_view uri) {
  constexpr std::string_view prefix = "bnf+";
  if (!uri.starts_with(prefix)) return bad_uri(uri, "expected bnf+tcp:HOST:PORT");
  std::string_view rest = uri.substr(prefix.size());
  auto colon = rest.find(':');
  if (colon == std::string_view::npos) return bad_uri(uri, "missing ':' after scheme");
  Endpoint ep;
  ep.scheme = std::string(rest.substr(0, colon));
  rest = rest.substr(colon + 1);
  if (rest.starts_with("//")) rest = rest.substr(2);
  if (ep.scheme == "mem") {
    if (rest.empty()) return bad_uri(uri, "missing name");
    ep.host = std::string(rest);
    return ep;
  }
  if (ep.scheme != "tcp") return bad_uri(uri, "unknown transport '" + ep.scheme + "' (known: tcp)");
  auto pcolon = rest.rfind(':');
  if (pcolon == std::string_view::npos || pcolon == 0) return bad_uri(uri, "expected HOST:PORT");
  std::string_view host = rest.substr(0, pcolon);
  std::string_view port = rest.substr(pcolon + 1);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || ptr != port.data() + port.size() || value > 65535)
    return bad_uri(uri, "bad port '" + std::string(port) + "'");
  ep.host = std::string(host);
  ep.port = static_cast<uint16_t>(value);
  return ep;
}

}  // namespace bnf
