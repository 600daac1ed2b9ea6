#include "protocol/peer_auth.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/files.hpp"
#include "common/random.hpp"
#include "digest/page_digest.hpp"
#include "protocol/control.hpp"

namespace bnf::proto {

using nlohmann::json;

namespace {

// 64 hex digits -> 32 bytes (the same shape as a digest key).
Result<std::array<uint8_t, 32>> bytes_from_hex(std::string_view hex, const char* what) {
  auto k = digest_key_from_hex(hex);
  if (!k.is_ok()) return Status(Errc::protocol, std::string(what) + ": expected 64 hex digits");
  return *k;
}

std::string hex(const std::array<uint8_t, 32>& b) { return to_hex(b); }

std::string trimmed(std::string s) {
  const auto last = s.find_last_not_of(" \t\r\n");
  s.erase(last == std::string::npos ? 0 : last + 1);
  return s.substr(std::min(s.size(), s.find_first_not_of(" \t\r\n")));
}

Result<Nonce> nonce_field(const json& j, const char* name, const char* frame) {
  BNF_ASSIGN_OR_RETURN(std::string h, field<std::string>(j, name));
  return bytes_from_hex(h, frame);
}

bool same_proof(const Proof& a, const Proof& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

constexpr const char* kKeysDiffer = "peer authentication failed: the two hosts' peer keys differ";

using transport::Protection;

Result<Protection> protection_field(const json& j, const char* frame) {
  BNF_ASSIGN_OR_RETURN(std::string p, field<std::string>(j, "protection"));
  if (p == transport::protection_name(Protection::encrypted)) return Protection::encrypted;
  if (p == transport::protection_name(Protection::integrity)) return Protection::integrity;
  return Status(Errc::protocol, std::string(frame) + ": unknown protection '" + p.substr(0, 32) + "'");
}

// HKDF-SHA256 with the peer key as input keying material and both nonces as salt.
Status hkdf(const PeerKey& key, const Nonce& connecting, const Nonce& listening, const std::string& info,
            std::span<uint8_t> out) {
  std::array<uint8_t, 64> salt{};
  std::copy(connecting.begin(), connecting.end(), salt.begin());
  std::copy(listening.begin(), listening.end(), salt.begin() + 32);
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  EVP_KDF_CTX* ctx = kdf != nullptr ? EVP_KDF_CTX_new(kdf) : nullptr;
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return {Errc::internal, "HKDF is not available"};
  char digest[] = "SHA256";
  auto* ikm = const_cast<uint8_t*>(key.bytes().data());
  auto* info_bytes = const_cast<char*>(info.data());
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm, key.bytes().size()),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()),
                               OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info_bytes, info.size()),
                               OSSL_PARAM_construct_end()};
  const int rc = EVP_KDF_derive(ctx, out.data(), out.size(), params);
  EVP_KDF_CTX_free(ctx);
  if (rc != 1) return {Errc::internal, "HKDF derivation failed"};
  return Status::ok();
}

Result<transport::DirectionKey> direction_key(const PeerKey& key, const Nonce& c, const Nonce& l, Protection p,
                                              const char* direction) {
  std::array<uint8_t, 44> okm{};
  BNF_TRY(hkdf(key, c, l, fmt::format("bnf {} {} {}", kVersion, transport::protection_name(p), direction), okm));
  transport::DirectionKey k;
  std::copy(okm.begin(), okm.begin() + 32, k.key.begin());
  std::copy(okm.begin() + 32, okm.end(), k.nonce_base.begin());
  return k;
}

}  // namespace

PeerKey PeerKey::generate() { return PeerKey(random_array<kBytes>()); }

Result<PeerKey> PeerKey::load(const std::string& path) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat " + path, errno);
  if ((st.st_mode & 077) != 0)
    return Status(Errc::invalid_argument, "peer key " + path + " can be read by other users (chmod 600 it)");
  BNF_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto bytes = bytes_from_hex(trimmed(text), ("peer key " + path).c_str());
  if (!bytes.is_ok()) return Status(Errc::invalid_argument, bytes.status().message());
  return PeerKey(*bytes);
}

Result<PeerKey> PeerKey::load_or_create(const std::string& path) {
  if (path_exists(path)) return load(path);
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (!dir.empty()) BNF_TRY(make_dirs(dir));
  // Written whole under a private name, then linked into place: link() fails
  // if another process created the key meanwhile, and then theirs is the key.
  const PeerKey key = generate();
  const std::string tmp = path + ".new." + to_hex(random_array<8>());  // private to this call, even among threads
  {
    BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600));
    const std::string text = hex(key.bytes()) + "\n";
    BNF_TRY(pwrite_all(fd.get(), text.data(), text.size(), 0).context(tmp));
    if (::fsync(fd.get()) != 0) return errno_status("fsync " + tmp, errno);
  }
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) return errno_status("create peer key " + path, err);
  return load(path);
}

Proof peer_proof(const PeerKey& key, PeerRole role, const Nonce& connecting, const Nonce& listening,
                 Protection agreed) {
  std::string msg = role == PeerRole::connecting ? "bnf peer proof: connecting" : "bnf peer proof: listening";
  msg.append(reinterpret_cast<const char*>(connecting.data()), connecting.size());
  msg.append(reinterpret_cast<const char*>(listening.data()), listening.size());
  msg.append(transport::protection_name(agreed));
  Proof p{};
  unsigned len = 0;
  HMAC(EVP_sha256(), key.bytes().data(), static_cast<int>(key.bytes().size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), p.data(), &len);
  return p;
}

Result<transport::ChannelKeys> derive_channel_keys(const PeerKey& key, PeerRole role, const Nonce& connecting,
                                                   const Nonce& listening, Protection agreed) {
  BNF_ASSIGN_OR_RETURN(transport::DirectionKey to_listening,
                       direction_key(key, connecting, listening, agreed, "connecting>listening"));
  BNF_ASSIGN_OR_RETURN(transport::DirectionKey to_connecting,
                       direction_key(key, connecting, listening, agreed, "listening>connecting"));
  transport::ChannelKeys k;
  k.protection = agreed;
  k.send = role == PeerRole::connecting ? to_listening : to_connecting;
  k.recv = role == PeerRole::connecting ? to_connecting : to_listening;
  BNF_TRY(hkdf(key, connecting, listening, fmt::format("bnf {} exporter", kVersion), k.exporter));
  return k;
}

Result<transport::ChannelKeys> authenticate_to_peer(transport::Connection& c, const PeerKey& key,
                                                    const std::string& peer_name, Protection wanted) {
  const Nonce mine = random_array<32>();
  BNF_TRY(
      send_control(c, FrameType::peer_hello,
                   {{"version", kVersion}, {"nonce", hex(mine)}, {"protection", transport::protection_name(wanted)}}));
  BNF_ASSIGN_OR_RETURN(Frame f, expect_frame(c, FrameType::peer_challenge));
  BNF_ASSIGN_OR_RETURN(json j, parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(Nonce theirs, nonce_field(j, "nonce", "PEER_CHALLENGE nonce"));
  BNF_ASSIGN_OR_RETURN(Proof proof, nonce_field(j, "proof", "PEER_CHALLENGE proof"));
  BNF_ASSIGN_OR_RETURN(Protection agreed, protection_field(j, "PEER_CHALLENGE"));
  if (!same_proof(proof, peer_proof(key, PeerRole::listening, mine, theirs, agreed))) {
    Status why(Errc::denied,
               fmt::format("{} ({} holds another; every host needs the same --peer-key file)", kKeysDiffer, peer_name));
    send_error(c, Status(Errc::denied, std::string(kKeysDiffer)));
    return why;
  }
  // Only a host holding the key could have chosen less than we asked for.
  if (wanted == Protection::encrypted && agreed != Protection::encrypted)
    return Status(Errc::denied, peer_name + " chose an unencrypted channel although this host asked for encryption");
  BNF_TRY(send_control(c, FrameType::peer_proof,
                       {{"proof", hex(peer_proof(key, PeerRole::connecting, mine, theirs, agreed))}}));
  return derive_channel_keys(key, PeerRole::connecting, mine, theirs, agreed);
}

Result<transport::ChannelKeys> authenticate_peer(transport::Connection& c, const PeerKey& key, Protection wanted) {
  BNF_ASSIGN_OR_RETURN(Frame hello, recv_frame(c, kMaxPeerMetaLen));
  if (hello.header.type != FrameType::peer_hello)
    return Status(Errc::denied, std::string("the peer did not authenticate: its first frame was ") +
                                    type_name(hello.header.type) + ", not PEER_HELLO (a bnf older than protocol 3?)");
  BNF_ASSIGN_OR_RETURN(json hj, parse_json_meta(hello));
  BNF_TRY(check_version(hj));
  BNF_ASSIGN_OR_RETURN(Nonce theirs, nonce_field(hj, "nonce", "PEER_HELLO nonce"));
  BNF_ASSIGN_OR_RETURN(Protection asked, protection_field(hj, "PEER_HELLO"));
  // Encrypted unless both hosts turned it off.
  const Protection agreed =
      asked == Protection::integrity && wanted == Protection::integrity ? Protection::integrity : Protection::encrypted;
  const Nonce mine = random_array<32>();
  BNF_TRY(send_control(c, FrameType::peer_challenge,
                       {{"nonce", hex(mine)},
                        {"protection", transport::protection_name(agreed)},
                        {"proof", hex(peer_proof(key, PeerRole::listening, theirs, mine, agreed))}}));
  BNF_ASSIGN_OR_RETURN(Frame f, expect_frame(c, FrameType::peer_proof));
  BNF_ASSIGN_OR_RETURN(json j, parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(Proof proof, nonce_field(j, "proof", "PEER_PROOF proof"));
  if (!same_proof(proof, peer_proof(key, PeerRole::connecting, theirs, mine, agreed)))
    return Status(Errc::denied, std::string(kKeysDiffer) + " (the connecting host's is not this daemon's --peer-key)");
  return derive_channel_keys(key, PeerRole::listening, theirs, mine, agreed);
}

Result<std::unique_ptr<transport::Connection>> secure_to_peer(std::unique_ptr<transport::Connection> c,
                                                              const PeerKey& key, const std::string& peer_name,
                                                              Protection wanted) {
  BNF_ASSIGN_OR_RETURN(transport::ChannelKeys keys, authenticate_to_peer(*c, key, peer_name, wanted));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<transport::SecureConnection> s,
                       transport::SecureConnection::over(std::move(c), keys));
  return std::unique_ptr<transport::Connection>(std::move(s));
}

namespace {
constexpr const char* kDigestKeyLabel = "bnf digest key";

Result<transport::Secret> digest_key_pad(const transport::Connection& c) {
  std::optional<transport::Secret> pad = c.keying_material(kDigestKeyLabel);
  if (!pad) return Status(Errc::internal, "a digest key crosses only a secure channel");
  return *pad;
}
}  // namespace

Result<std::string> seal_digest_key(const transport::Connection& c, const DigestKey& key) {
  BNF_ASSIGN_OR_RETURN(transport::Secret pad, digest_key_pad(c));
  for (size_t i = 0; i < pad.size(); ++i) pad[i] ^= key[i];
  return to_hex(pad);
}

Result<DigestKey> open_digest_key(const transport::Connection& c, std::string_view sealed_hex) {
  BNF_ASSIGN_OR_RETURN(transport::Secret pad, digest_key_pad(c));
  BNF_ASSIGN_OR_RETURN(DigestKey sealed, digest_key_from_hex(sealed_hex));
  for (size_t i = 0; i < pad.size(); ++i) sealed[i] ^= pad[i];
  return sealed;
}

}  // namespace bnf::proto
