// Reading and writing whole frames over a Connection: control messages carry
// JSON metadata; ERROR frames become a Status naming the peer's reason.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "transport/transport.hpp"

namespace bnf::proto {

struct Frame {
  FrameHeader header;
  std::string meta;  // verified against header.meta_crc; payload not yet read
};

// Receives one frame header and its metadata. An ERROR frame is returned as a
// failed Status carrying the peer's message.
Result<Frame> recv_frame(transport::Connection& c);
// As recv_frame, but fails unless the frame has type `want` (names both otherwise).
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

// Typed field access with a one-line error naming the field.
template <typename T>
Result<T> field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return Status(Errc::protocol, std::string("message lacks field '") + key + "'");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    return Status(Errc::protocol, std::string("message field '") + key + "' has the wrong type");
  }
}

}  // namespace bnf::proto
