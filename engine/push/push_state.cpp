#include "push/push_state.hpp"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/crc32c.hpp"
#include "common/files.hpp"
#include "common/page.hpp"

namespace bnf {

using nlohmann::json;

namespace {
constexpr uint32_t kMagic = 0x53464E42;  // "BNFS"
}

Status PushState::save(const std::string& path) const {
  const std::string head = json{
      {"lineage", lineage},
      {"epoch", epoch},
      {"root", digest_hex(root)},
      {"key", to_hex(key)},
      {"size_bytes",
       size_bytes}}.dump();
  std::string out;
  const uint32_t head_len = static_cast<uint32_t>(head.size());
  out.append(reinterpret_cast<const char*>(&kMagic), 4);
  out.append(reinterpret_cast<const char*>(&head_len), 4);
  out += head;
  const auto tb = table.bytes();
  out.append(reinterpret_cast<const char*>(tb.data()), tb.size());
  const uint32_t crc = crc32c(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&crc), 4);
  BNF_TRY(make_dirs(std::filesystem::path(path).parent_path().string()));
  return write_file_atomic(path, out);
}

Result<PushState> PushState::load(const std::string& path) {
  BNF_ASSIGN_OR_RETURN(std::string data, read_file(path));
  auto bad = [&](const char* why) { return Status(Errc::corrupt, "push state " + path + ": " + why); };
  if (data.size() < 12) return bad("too short");
  uint32_t magic;
  uint32_t head_len;
  uint32_t crc;
  std::memcpy(&magic, data.data(), 4);
  std::memcpy(&head_len, data.data() + 4, 4);
  std::memcpy(&crc, data.data() + data.size() - 4, 4);
  if (magic != kMagic) return bad("bad magic");
  if (crc != crc32c(data.data(), data.size() - 4)) return bad("checksum mismatch");
  if (head_len > data.size() - 12) return bad("bad header length");
  json j = json::parse(data.substr(8, head_len), nullptr, false);
  if (j.is_discarded()) return bad("bad header");
  PushState s;
  try {
    s.lineage = j.at("lineage").get<std::string>();
    s.epoch = j.at("epoch").get<uint64_t>();
    BNF_ASSIGN_OR_RETURN(s.root, digest_from_hex(j.at("root").get<std::string>()));
    BNF_ASSIGN_OR_RETURN(s.key, digest_key_from_hex(j.at("key").get<std::string>()));
    s.size_bytes = j.at("size_bytes").get<uint64_t>();
  } catch (const json::exception&) {
    return bad("bad header fields");
  }
  const size_t table_len = data.size() - 12 - head_len;
  s.table = DigestTable(s.size_bytes / kPageSize);
  if (table_len != s.table.bytes().size()) return bad("table size mismatch");
  std::memcpy(s.table.writable_bytes().data(), data.data() + 8 + head_len, table_len);
  if (!(s.table.root(PageDigester(s.key)) == s.root)) return bad("table does not match its root");
  return s;
}

std::string default_push_state_path(const std::string& peer, const std::string& name) {
  std::string base;
  if (const char* x = std::getenv("XDG_STATE_HOME");  // NOLINT(concurrency-mt-unsafe): nothing sets the environment
      x != nullptr && *x != '\0') {
    base = x;
  } else if (const char* h = std::getenv("HOME");  // NOLINT(concurrency-mt-unsafe)
             h != nullptr && *h != '\0') {
    base = std::string(h) + "/.local/state";
  } else {
    base = "/tmp";
  }
  std::string safe_peer;
  for (char c : peer) safe_peer.push_back((std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.') ? c : '_');
  return base + "/bnf/push/" + safe_peer + "/" + name + ".state";
}

}  // namespace bnf
