#include "snapshot/manifest.hpp"

#include <nlohmann/json.hpp>

#include "common/page.hpp"

namespace bnf {

using nlohmann::json;

std::string Manifest::to_json(bool with_key) const {
  json j = {{"format", kFormat},
            {"name", name},
            {"lineage", lineage},
            {"epoch", epoch},
            {"page_size", page_size},
            {"size_bytes", size_bytes},
            {"root", digest_hex(root)},
            {"digests_file", digests_file},
            {"committed_at", committed_at},
            {"committed_from", committed_from},
            {"mode", mode},
            {"pages_landed", pages_landed},
            {"has_device_state", has_device_state}};
  if (with_key) j["key"] = to_hex(key);
  return j.dump(2) + "\n";
}

Result<Manifest> Manifest::from_json(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status(Errc::corrupt, "manifest: not JSON");
  try {
    if (j.at("format").get<int>() != kFormat) return Status(Errc::version, "manifest: unknown format");
    Manifest m;
    m.name = j.at("name").get<std::string>();
    m.lineage = j.at("lineage").get<std::string>();
    m.epoch = j.at("epoch").get<uint64_t>();
    m.page_size = j.at("page_size").get<uint32_t>();
    m.size_bytes = j.at("size_bytes").get<uint64_t>();
    BNF_ASSIGN_OR_RETURN(m.key, digest_key_from_hex(j.at("key").get<std::string>()));
    BNF_ASSIGN_OR_RETURN(m.root, digest_from_hex(j.at("root").get<std::string>()));
    m.digests_file = j.at("digests_file").get<std::string>();
    m.committed_at = j.at("committed_at").get<int64_t>();
    m.committed_from = j.at("committed_from").get<std::string>();
    m.mode = j.at("mode").get<std::string>();
    m.pages_landed = j.at("pages_landed").get<uint64_t>();
    m.has_device_state = j.at("has_device_state").get<bool>();
    if (m.page_size != kPageSize || m.size_bytes % m.page_size != 0)
      return Status(Errc::corrupt, "manifest: bad page size or image size");
    return m;
  } catch (const json::exception& e) {
    return Status(Errc::corrupt, std::string("manifest: ") + e.what());
  }
}

Result<std::string> random_lineage() {
  DigestKey k = random_digest_key();
  return to_hex(std::span<const uint8_t>(k.data(), 16));
}

}  // namespace bnf
