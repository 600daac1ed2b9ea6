#include "transport/secure/secure_connection.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstring>

namespace bnf::transport {

namespace {

// Parts this large are pages (or other bulk data): they start a record of
// their own so that the receiver can decrypt them where it lands them.
constexpr size_t kBulkPart = 4096;
// Sealed records wait in the arena until the inner connection flushes; one
// flush per arena's worth keeps the inner window busy meanwhile.
constexpr size_t kEncryptedArenaBytes = 2U << 20;
constexpr size_t kIntegrityArenaBytes = 64U << 10;  // lengths and tags only

using Nonce = std::array<uint8_t, 12>;

Nonce record_nonce(const DirectionKey& k, uint64_t seq) {
  Nonce n = k.nonce_base;
  for (int i = 0; i < 8; ++i) n[4 + i] ^= static_cast<uint8_t>(seq >> (56 - 8 * i));
  return n;
}

std::array<uint8_t, SecureConnection::kLengthBytes> encode_length(size_t len) {
  const auto v = static_cast<uint32_t>(len);
  return {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 24)};
}

uint32_t decode_length(const std::array<std::byte, SecureConnection::kLengthBytes>& b) {
  return static_cast<uint32_t>(b[0]) | static_cast<uint32_t>(b[1]) << 8 | static_cast<uint32_t>(b[2]) << 16 |
         static_cast<uint32_t>(b[3]) << 24;
}

const auto* u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
auto* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

}  // namespace

const char* protection_name(Protection p) noexcept { return p == Protection::encrypted ? "encrypted" : "integrity"; }

// One direction's AES-256-GCM state: the key is set once, each record sets
// only its nonce.
struct SecureConnection::Cipher {
  struct Free {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
  };
  std::unique_ptr<EVP_CIPHER_CTX, Free> ctx{EVP_CIPHER_CTX_new()};
  DirectionKey key;
  bool encrypts = true;
  bool body_encrypted = true;

  Status init(const DirectionKey& k, bool for_sending, Protection p) {
    key = k;
    encrypts = for_sending;
    body_encrypted = p == Protection::encrypted;
    if (!ctx) return {Errc::internal, "secure channel: cannot allocate a cipher context"};
    const int ok = for_sending ? EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.key.data(), nullptr)
                               : EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.key.data(), nullptr);
    if (ok != 1) return {Errc::internal, "secure channel: AES-256-GCM is not available"};
    return Status::ok();
  }

  // Starts record `seq`, whose length field is the authenticated data.
  bool begin(uint64_t seq, const std::array<uint8_t, kLengthBytes>& length) {
    const Nonce n = record_nonce(key, seq);
    int out = 0;
    if (encrypts)
      return EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, nullptr, n.data()) == 1 &&
             EVP_EncryptUpdate(ctx.get(), nullptr, &out, length.data(), static_cast<int>(length.size())) == 1;
    return EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, nullptr, n.data()) == 1 &&
           EVP_DecryptUpdate(ctx.get(), nullptr, &out, length.data(), static_cast<int>(length.size())) == 1;
  }

  // Encrypts (or, for integrity only, authenticates) `in` into `out`; out may
  // equal in. Without body encryption `out` is not written.
  bool update(const std::byte* in, std::byte* out, size_t n) {
    int got = 0;
    unsigned char* dst = body_encrypted ? u8(out) : nullptr;
    const auto len = static_cast<int>(n);
    return encrypts ? EVP_EncryptUpdate(ctx.get(), dst, &got, u8(in), len) == 1
                    : EVP_DecryptUpdate(ctx.get(), dst, &got, u8(in), len) == 1;
  }

  bool seal_tag(std::byte* tag) {
    int got = 0;
    unsigned char none[16];
    return EVP_EncryptFinal_ex(ctx.get(), none, &got) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, u8(tag)) == 1;
  }

  bool tag_matches(std::byte* tag) {
    int got = 0;
    unsigned char none[16];
    return EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, u8(tag)) == 1 &&
           EVP_DecryptFinal_ex(ctx.get(), none, &got) > 0;
  }
};

SecureConnection::SecureConnection(std::unique_ptr<Connection> inner, const ChannelKeys& keys)
    : keys_(keys), send_(std::make_unique<Cipher>()), recv_(std::make_unique<Cipher>()), inner_(std::move(inner)) {}

SecureConnection::~SecureConnection() = default;

Result<std::unique_ptr<SecureConnection>> SecureConnection::over(std::unique_ptr<Connection> inner,
                                                                 const ChannelKeys& keys) {
  std::unique_ptr<SecureConnection> c(new SecureConnection(std::move(inner), keys));
  BNF_TRY(c->send_->init(keys.send, true, keys.protection));
  BNF_TRY(c->recv_->init(keys.recv, false, keys.protection));
  return c;
}

Result<RegionHandle> SecureConnection::register_region(std::span<const std::byte> region) {
  // Encrypted records are built in the arena: only integrity-only records
  // send the caller's memory itself, so only they register it with inner_.
  if (keys_.protection == Protection::integrity) return inner_->register_region(region);
  return own_regions_->add(region);
}

Status SecureConnection::post(std::span<const ConstBuffer> parts) {
  std::vector<ConstBuffer> record;
  size_t bytes = 0;
  bool bulk = false;
  auto close_record = [&]() -> Status {
    if (bytes == 0) return Status::ok();
    Status st = seal(record, bytes);
    record.clear();
    bytes = 0;
    return st;
  };
  for (const ConstBuffer& p : parts) {
    if (p.size == 0) continue;
    const bool big = p.size >= kBulkPart;
    if (bytes > 0 && big != bulk) BNF_TRY(close_record());
    bulk = big;
    for (size_t off = 0; off < p.size;) {
      const size_t take = std::min(p.size - off, kMaxRecord - bytes);
      record.push_back({p.data + off, take});
      bytes += take;
      off += take;
      if (bytes == kMaxRecord) BNF_TRY(close_record());
    }
  }
  return close_record();
}

Result<std::byte*> SecureConnection::arena_space(size_t bytes) {
  if (arena_.empty()) {
    arena_.resize(keys_.protection == Protection::encrypted ? kEncryptedArenaBytes : kIntegrityArenaBytes);
    BNF_ASSIGN_OR_RETURN(arena_region_, inner_->register_region(arena_));
  }
  if (arena_used_ + bytes > arena_.size()) {
    BNF_TRY(inner_->flush());
    arena_used_ = 0;
  }
  std::byte* at = arena_.data() + arena_used_;
  arena_used_ += bytes;
  return at;
}

Status SecureConnection::seal(std::span<const ConstBuffer> parts, size_t bytes) {
  const auto length = encode_length(bytes);
  const bool encrypted = keys_.protection == Protection::encrypted;
  const size_t overhead = kLengthBytes + kTagBytes;
  BNF_ASSIGN_OR_RETURN(std::byte * out, arena_space(overhead + (encrypted ? bytes : 0)));
  std::memcpy(out, length.data(), kLengthBytes);
  bool ok = send_->begin(send_seq_, length);
  std::byte* body = out + kLengthBytes;
  for (const ConstBuffer& p : parts) {
    ok = ok && send_->update(p.data, body, p.size);
    if (encrypted) body += p.size;
  }
  std::byte* tag = body;
  ok = ok && send_->seal_tag(tag);
  if (!ok) return {Errc::internal, "secure channel: sealing a record failed"};
  ++send_seq_;
  if (encrypted) {
    const ConstBuffer whole{out, overhead + bytes};
    return inner_->post(std::span<const ConstBuffer>(&whole, 1));
  }
  std::vector<ConstBuffer> wire;
  wire.reserve(parts.size() + 2);
  wire.push_back({out, kLengthBytes});
  wire.insert(wire.end(), parts.begin(), parts.end());
  wire.push_back({tag, kTagBytes});
  return inner_->post(wire);
}

Status SecureConnection::flush() {
  BNF_TRY(inner_->flush());
  arena_used_ = 0;
  return Status::ok();
}

Status SecureConnection::recv(std::span<std::byte> dst) {
  const MutableBuffer one{dst.data(), dst.size()};
  return recv_scatter(std::span<const MutableBuffer>(&one, 1));
}

Status SecureConnection::recv_scatter(std::span<const MutableBuffer> parts) {
  if (!recv_failure_.is_ok()) return recv_failure_;
  std::span<const MutableBuffer> want = parts;
  size_t skip = 0;  // bytes of want.front() already filled
  while (true) {
    while (!want.empty() && skip == want.front().size) {
      want = want.subspan(1);
      skip = 0;
    }
    if (want.empty()) return Status::ok();
    if (has_pending_input()) {
      const size_t n = std::min(kept_.size() - kept_pos_, want.front().size - skip);
      std::memcpy(want.front().data + skip, kept_.data() + kept_pos_, n);
      kept_pos_ += n;
      skip += n;
      continue;
    }
    BNF_TRY(open_next_record(want, skip));
  }
}

// Reads the next record: as much of its body as the reader wants goes
// straight to the reader's buffers (and is decrypted there), the rest into
// kept_. Nothing counts as received before the tag matched.
Status SecureConnection::open_next_record(std::span<const MutableBuffer>& want, size_t& skip) {
  std::array<std::byte, kLengthBytes> length_bytes{};
  if (Status st = inner_->recv(length_bytes); !st.is_ok()) return fail_recv(st);
  const uint32_t len = decode_length(length_bytes);
  if (len == 0 || len > kMaxRecord)
    return fail_recv({Errc::corrupt, fmt::format("secure channel: a record of {} bytes from {} (at most {})", len,
                                                 peer(), kMaxRecord)});
  std::vector<MutableBuffer> segments;
  size_t direct = 0;
  std::span<const MutableBuffer> w = want;
  size_t s = skip;
  while (direct < len && !w.empty()) {
    const size_t take = std::min(w.front().size - s, len - direct);
    if (take > 0) segments.push_back({w.front().data + s, take});
    direct += take;
    s += take;
    if (s == w.front().size) {
      w = w.subspan(1);
      s = 0;
    }
  }
  const size_t tail = len - direct;
  kept_.resize(tail + kTagBytes);
  kept_pos_ = kept_.size();  // nothing kept is valid until the tag matched
  segments.push_back({kept_.data(), tail + kTagBytes});
  if (Status st = inner_->recv_scatter(segments); !st.is_ok()) return fail_recv(st);
  segments.back().size = tail;
  const std::array<uint8_t, kLengthBytes> aad = encode_length(len);
  bool ok = recv_->begin(recv_seq_, aad);
  for (const MutableBuffer& m : segments) ok = ok && (m.size == 0 || recv_->update(m.data, m.data, m.size));
  if (!ok || !recv_->tag_matches(kept_.data() + tail))
    return fail_recv({Errc::corrupt, fmt::format("secure channel: a record from {} failed authentication (altered, "
                                                 "dropped, replayed, reordered or not from this connection)",
                                                 peer())});
  ++recv_seq_;
  kept_.resize(tail);
  kept_pos_ = 0;
  want = w;
  skip = s;
  return Status::ok();
}

Status SecureConnection::fail_recv(Status s) {
  recv_failure_ = s;
  return s;
}

std::optional<Secret> SecureConnection::keying_material(std::string_view label) const {
  Secret out{};
  unsigned len = 0;
  HMAC(EVP_sha256(), keys_.exporter.data(), static_cast<int>(keys_.exporter.size()),
       reinterpret_cast<const unsigned char*>(label.data()), label.size(), out.data(), &len);
  return out;
}

}  // namespace bnf::transport
