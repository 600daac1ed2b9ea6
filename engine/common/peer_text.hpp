// Text a peer sent (an ERROR reason, a sender's name), made safe to log and to
// print: a peer must not forge log lines or drive the operator's terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace bnf {

inline constexpr size_t kMaxPeerTextLen = 300;

// `text` with every byte outside printable ASCII (newlines, escape sequences,
// other control and non-ASCII bytes) replaced by '?', cut to `max_len`
// characters ("..." marks the cut).
[[nodiscard]] std::string printable_peer_text(std::string_view text, size_t max_len = kMaxPeerTextLen);

}  // namespace bnf
