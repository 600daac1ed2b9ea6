// libFuzzer target for JSON control messages as a peer sends them: the
// metadata parser, the strict typed fields every receiver reads, a VM
// definition, and an ERROR frame's reason as it is logged. Any input must be
// refused or taken without an exception or a crash; what is taken must be
// what the JSON said, and a reason must come out printable.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/crc32c.hpp"
#include "launch/vm_definition.hpp"
#include "protocol/control.hpp"
#include "transport/mem/mem_transport.hpp"

namespace {

using bnf::proto::field;
using nlohmann::json;

void check_fields(const json& j) {
  if (auto v = field<uint32_t>(j, "version"); v.is_ok() && j["version"].get<int64_t>() != static_cast<int64_t>(*v))
    __builtin_trap();
  if (auto v = field<uint64_t>(j, "size_bytes"); v.is_ok() && !j["size_bytes"].is_number_unsigned()) __builtin_trap();
  (void)field<unsigned>(j, "streams");
  (void)field<int>(j, "code");
  (void)field<bool>(j, "same");
  (void)field<double>(j, "resumed_at");
  (void)field<std::string>(j, "name");
  (void)bnf::proto::optional_field<std::string>(j, "reason", "");
  (void)bnf::proto::field_or<std::string>(j, "fallback", "");
  if (j.contains("definition")) (void)bnf::qemu::VmDefinition::from_json(j["definition"]);
  (void)bnf::qemu::VmDefinition::from_json(j);
  (void)j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The input as an ERROR frame's metadata, through recv_frame.
void check_error_frame(const std::string& meta) {
  if (meta.size() > bnf::proto::kMaxErrorMetaLen) return;
  bnf::transport::MemNetwork net;
  const bnf::Endpoint ep = *bnf::parse_endpoint("bnf+mem:fuzz");
  auto listener = net.transport()->listen(ep);
  auto client = net.transport()->connect(ep);
  auto server = (*listener)->accept();
  bnf::proto::FrameHeader h;
  h.type = bnf::proto::FrameType::error;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.meta_crc = bnf::crc32c(meta.data(), meta.size());
  h.payload_crc = bnf::crc32c(nullptr, 0);
  const auto hb = bnf::proto::encode_header(h);
  (void)bnf::transport::post_bytes(**client, hb, std::as_bytes(std::span(meta)));
  auto f = bnf::proto::recv_frame(**server);
  if (f.is_ok()) __builtin_trap();  // an ERROR frame is always a failure
  const std::string said = f.status().message();
  for (const char c : said)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string meta(reinterpret_cast<const char*>(data), size);
  bnf::proto::Frame f{{bnf::proto::FrameType::hello}, meta};
  if (auto j = bnf::proto::parse_json_meta(f); j.is_ok()) check_fields(*j);
  check_error_frame(meta);
  return 0;
}
