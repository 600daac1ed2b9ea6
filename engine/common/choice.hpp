// Options whose value is one of a few names: one table per option maps each
// name to its enum value, and both the CLI and the control socket parse with
// it, so an unknown name is refused everywhere the same way (never taken as a
// default).
#pragma once

#include <fmt/format.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "common/peer_text.hpp"
#include "common/status.hpp"

namespace bnf {

template <class E>
struct Choice {
  std::string_view name;
  E value;
};

// `text` as the value of `what`; an unknown name is an error of `code`
// naming the allowed ones (Errc::protocol where a peer sent it) and the
// name, made printable and short.
template <class E, size_t N>
Result<E> parse_choice(const std::array<Choice<E>, N>& table, std::string_view what, std::string_view text,
                       Errc code = Errc::invalid_argument) {
  for (const Choice<E>& c : table)
    if (c.name == text) return c.value;
  std::string allowed;
  for (const Choice<E>& c : table) allowed += (allowed.empty() ? "" : ", ") + std::string(c.name);
  return Status(code, fmt::format("{} must be one of {}, not '{}'", what, allowed, printable_peer_text(text, 64)));
}

template <class E, size_t N>
std::vector<std::string> choice_names(const std::array<Choice<E>, N>& table) {
  std::vector<std::string> names;
  names.reserve(N);
  for (const Choice<E>& c : table) names.emplace_back(c.name);
  return names;
}

}  // namespace bnf
