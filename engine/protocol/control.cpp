#include "protocol/control.hpp"

#include <fmt/format.h>

#include <vector>

#include "common/crc32c.hpp"
#include "common/peer_text.hpp"

namespace bnf::proto {

using nlohmann::json;

namespace {

Result<FrameHeader> recv_header(transport::Connection& c, uint32_t max_meta) {
  HeaderBytes hb;
  BNF_TRY(c.recv(hb));
  BNF_ASSIGN_OR_RETURN(FrameHeader h, decode_header(hb));
  if (h.meta_len > max_meta)
    return Status(Errc::protocol, fmt::format("bad frame: {} metadata length {} over the limit {} here",
                                              type_name(h.type), h.meta_len, max_meta));
  return h;
}

Result<Frame> recv_meta(transport::Connection& c, const FrameHeader& h) {
  Frame f{h, std::string(h.meta_len, '\0')};
  if (h.meta_len > 0) BNF_TRY(c.recv(std::as_writable_bytes(std::span(f.meta))));
  if (crc32c(f.meta.data(), f.meta.size()) != h.meta_crc)
    return Status(Errc::corrupt, std::string("bad frame: metadata CRC mismatch in ") + type_name(h.type));
  return f;
}

// An ERROR frame's reason and code, as the Status it stands for.
Status peer_error(const Frame& f) {
  json j = json::parse(f.meta, nullptr, false);
  std::string reason = "peer reported an error";
  if (j.is_object() && j.contains("reason") && j["reason"].is_string())
    reason = printable_peer_text(j["reason"].get_ref<const std::string&>());
  Errc code = Errc::protocol;
  if (auto v = optional_field<int>(j, "code", 0); v.is_ok() && *v > 0 && *v <= static_cast<int>(kLastErrc))
    code = static_cast<Errc>(*v);
  return Status::from_peer(code, reason);
}

Result<Frame> recv_rest(transport::Connection& c, const FrameHeader& h) {
  BNF_ASSIGN_OR_RETURN(Frame f, recv_meta(c, h));
  if (h.type == FrameType::error) return peer_error(f);
  return f;
}

}  // namespace

Result<Frame> recv_frame(transport::Connection& c, uint32_t max_meta) {
  BNF_ASSIGN_OR_RETURN(FrameHeader h, recv_header(c, max_meta));
  return recv_rest(c, h);
}

Result<Frame> expect_frame(transport::Connection& c, FrameType want) {
  BNF_ASSIGN_OR_RETURN(FrameHeader h, recv_header(c, kMaxMetaLen));
  if (h.type != want && h.type != FrameType::error)
    return Status(Errc::protocol,
                  std::string("unexpected ") + type_name(h.type) + " frame (expected " + type_name(want) + ")");
  return recv_rest(c, h);
}

Status recv_checked_payload(transport::Connection& c, std::span<std::byte> dst, uint32_t crc) {
  BNF_TRY(c.recv(dst));
  if (crc32c(dst.data(), dst.size()) != crc) return {Errc::corrupt, "bad frame: payload CRC mismatch"};
  return Status::ok();
}

Status recv_payload(transport::Connection& c, const Frame& f, uint64_t max, std::vector<std::byte>& into) {
  if (f.header.payload_len > max)
    return {Errc::protocol, std::string("bad frame: ") + type_name(f.header.type) + " payload too large"};
  into.resize(f.header.payload_len);
  return recv_checked_payload(c, into, f.header.payload_crc);
}

Status send_control(transport::Connection& c, FrameType t, const json& body, std::span<const std::byte> payload) {
  // Text from a peer may not be UTF-8: replaced, never an exception.
  const std::string meta = body.dump(-1, ' ', false, json::error_handler_t::replace);
  FrameHeader h;
  h.type = t;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.meta_crc = crc32c(meta.data(), meta.size());
  h.payload_len = payload.size();
  h.payload_crc = crc32c(payload.data(), payload.size());
  const HeaderBytes hb = encode_header(h);
  BNF_TRY(transport::post_bytes(c, hb, std::as_bytes(std::span(meta)), payload));
  return c.flush();
}

Status post_run_frame(transport::Connection& c, FrameType t, std::span<const PageRun> runs,
                      std::span<const transport::ConstBuffer> payload) {
  const std::string meta = encode_runs(runs);
  FrameHeader h;
  h.type = t;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.meta_crc = crc32c(meta.data(), meta.size());
  uint32_t crc = crc32c_init;
  for (const transport::ConstBuffer& p : payload) {
    crc = crc32c_extend(crc, p.data, p.size);
    h.payload_len += p.size;
  }
  h.payload_crc = crc32c_final(crc);
  const HeaderBytes hb = encode_header(h);
  std::vector<transport::ConstBuffer> parts;
  parts.reserve(payload.size() + 2);
  parts.push_back({hb.data(), hb.size()});
  parts.push_back({reinterpret_cast<const std::byte*>(meta.data()), meta.size()});
  parts.insert(parts.end(), payload.begin(), payload.end());
  return c.post(parts);
}

void send_error(transport::Connection& c, const Status& why) {
  // Capped: the peer takes at most kMaxErrorMetaLen of it.
  const std::string reason = why.message().substr(0, kMaxErrorMetaLen / 2);
  (void)send_control(c, FrameType::error, {{"reason", reason}, {"code", static_cast<int>(why.code())}});
}

namespace detail {
Status wrong_type(const char* key) {
  return {Errc::protocol, std::string("message field '") + key + "' has the wrong type"};
}
Status out_of_range(const char* key) {
  return {Errc::protocol, std::string("message field '") + key + "' is out of range"};
}
}  // namespace detail

Status check_version(const json& j) {
  BNF_ASSIGN_OR_RETURN(uint32_t version, field<uint32_t>(j, "version"));
  if (version == kVersion) return Status::ok();
  return {Errc::version, fmt::format("unsupported protocol version {} (this daemon speaks {})", version, kVersion)};
}

Result<json> parse_json_meta(const Frame& f) {
  json j = json::parse(f.meta, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status(Errc::protocol,
                  std::string("bad frame: ") + type_name(f.header.type) + " metadata is not a JSON object");
  return j;
}

}  // namespace bnf::proto
