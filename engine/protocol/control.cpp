#include "protocol/control.hpp"

#include <vector>

#include "common/crc32c.hpp"

namespace bnf::proto {

using nlohmann::json;

Result<Frame> recv_frame(transport::Connection& c) {
  HeaderBytes hb;
  BNF_TRY(c.recv(hb));
  BNF_ASSIGN_OR_RETURN(FrameHeader h, decode_header(hb));
  Frame f{h, std::string(h.meta_len, '\0')};
  if (h.meta_len > 0) BNF_TRY(c.recv(std::as_writable_bytes(std::span(f.meta))));
  if (crc32c(f.meta.data(), f.meta.size()) != h.meta_crc)
    return Status(Errc::corrupt, std::string("bad frame: metadata CRC mismatch in ") + type_name(h.type));
  if (h.type == FrameType::error) {
    json j = json::parse(f.meta, nullptr, false);
    std::string reason = "peer reported an error";
    if (j.is_object() && j.contains("reason") && j["reason"].is_string()) reason = j["reason"].get<std::string>();
    Errc code = Errc::protocol;
    if (j.is_object() && j.contains("code") && j["code"].is_number_integer()) {
      const int v = j["code"].get<int>();
      if (v > 0 && v <= static_cast<int>(Errc::denied)) code = static_cast<Errc>(v);
    }
    return Status(code, "peer: " + reason);
  }
  return f;
}

Result<Frame> expect_frame(transport::Connection& c, FrameType want) {
  BNF_ASSIGN_OR_RETURN(Frame f, recv_frame(c));
  if (f.header.type != want)
    return Status(Errc::protocol,
                  std::string("unexpected ") + type_name(f.header.type) + " frame (expected " + type_name(want) + ")");
  return f;
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
  const std::string meta = body.dump();
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
  (void)send_control(c, FrameType::error, {{"reason", why.message()}, {"code", static_cast<int>(why.code())}});
}

Result<json> parse_json_meta(const Frame& f) {
  json j = json::parse(f.meta, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status(Errc::protocol,
                  std::string("bad frame: ") + type_name(f.header.type) + " metadata is not a JSON object");
  return j;
}

}  // namespace bnf::proto
