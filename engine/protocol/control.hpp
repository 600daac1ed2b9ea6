// Reading and writing whole frames over a Connection: control messages carry
// JSON metadata; ERROR frames become a Status naming the peer's reason.
#pragma once

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "common/choice.hpp"
#include "protocol/frame.hpp"
#include "transport/transport.hpp"

namespace bnf::proto {

// A transfer's mode, as BEGIN and VM_ACCEPT name it: every page, or the pages
// that differ from the receiver's retained snapshot.
enum class TransferMode { full, incremental };
inline constexpr std::array<Choice<TransferMode>, 2> kTransferModes{
    {{"full", TransferMode::full}, {"incremental", TransferMode::incremental}}};

struct Frame {
  FrameHeader header;
  std::string meta;  // verified against header.meta_crc; payload not yet read
};

// Receives one frame header and its metadata. An ERROR frame is returned as a
// failed Status carrying the peer's message (made printable, capped:
// common/peer_text.hpp). `max_meta`: a tighter bound on the metadata than its
// type's (before authentication), checked before the metadata is allocated.
Result<Frame> recv_frame(transport::Connection& c, uint32_t max_meta = kMaxMetaLen);
// As recv_frame, but fails unless the frame has type `want` (names both
// otherwise), before any metadata of another type is read.
Result<Frame> expect_frame(transport::Connection& c, FrameType want);
// Receives `len` payload bytes into `dst` and checks them against `crc`.
Status recv_checked_payload(transport::Connection& c, std::span<std::byte> dst, uint32_t crc);
// Receives frame `f`'s whole payload into `into`, checked; more than `max`
// bytes is a protocol error naming the frame type.
Status recv_payload(transport::Connection& c, const Frame& f, uint64_t max, std::vector<std::byte>& into);

// Sends a control frame whose metadata is `body` as JSON, optionally with a payload.
Status send_control(transport::Connection& c, FrameType t, const nlohmann::json& body,
                    std::span<const std::byte> payload = {});
// Posts a PAGES or ZEROS frame: the runs as metadata, then `payload` (the runs'
// page contents, in order; empty for ZEROS). Payload parts inside a registered
// region go without a copy, so they must stay valid until the next flush().
Status post_run_frame(transport::Connection& c, FrameType t, std::span<const PageRun> runs,
                      std::span<const transport::ConstBuffer> payload);
// Best effort: tells the peer why we stop. Errors are ignored (the peer may be gone).
void send_error(transport::Connection& c, const Status& why);

Result<nlohmann::json> parse_json_meta(const Frame& f);
// The message's "version" field is this build's kVersion (else Errc::version, naming both).
[[nodiscard]] Status check_version(const nlohmann::json& j);

// Typed field access with a one-line error naming the field. Strict: an
// integer field takes only a JSON integer in T's range (no negative number for
// an unsigned T, no fraction, no number in a string, no bool), a bool field
// only true/false, a string field only a string. Never throws.
template <typename T>
Result<T> field(const nlohmann::json& j, const char* key);

// As field, but a missing (or null) field is `fallback`.
template <typename T>
Result<T> optional_field(const nlohmann::json& j, const char* key, T fallback) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  return field<T>(j, key);
}

// As optional_field, but a field of the wrong type is `fallback` too (figures
// a peer reports, where a bad one costs nothing but the figure).
template <typename T>
T field_or(const nlohmann::json& j, const char* key, T fallback) {
  auto v = optional_field<T>(j, key, fallback);
  return v.is_ok() ? std::move(v).value() : fallback;
}

namespace detail {
Status wrong_type(const char* key);
Status out_of_range(const char* key);

template <typename T>
Result<T> strict_integer(const nlohmann::json& v, const char* key) {
  if (!v.is_number_integer()) return wrong_type(key);
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return out_of_range(key);
    return static_cast<T>(u);
  }
  const auto i = v.get<int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (i < 0) return out_of_range(key);
    if (static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())) return out_of_range(key);
  } else {
    if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        i > static_cast<int64_t>(std::numeric_limits<T>::max()))
      return out_of_range(key);
  }
  return static_cast<T>(i);
}
}  // namespace detail

template <typename T>
Result<T> field(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return detail::wrong_type(key);
  auto it = j.find(key);
  if (it == j.end()) return Status(Errc::protocol, std::string("message lacks field '") + key + "'");
  const nlohmann::json& v = *it;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return detail::wrong_type(key);
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    return detail::strict_integer<T>(v, key);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return detail::wrong_type(key);
    return v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return detail::wrong_type(key);
    return v.get<std::string>();
  } else {
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      return detail::wrong_type(key);
    }
  }
}

}  // namespace bnf::proto
