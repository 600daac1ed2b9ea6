// The secure channel's records: what one end seals, only the other end of the
// same connection opens, in order, once. The wire between them is a byte
// buffer here, so a test can alter, drop, replay, reorder or move records the
// way an on-path attacker would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "protocol/peer_auth.hpp"
#include "transport/secure/secure_connection.hpp"

namespace bnf::transport {
namespace {

using Bytes = std::vector<std::byte>;

// A Connection whose sends append to `out` and whose receives read `in`.
class WireBuffer final : public Connection {
 public:
  WireBuffer(Bytes& out, const Bytes& in) : out_(out), in_(in) {}
  Result<RegionHandle> register_region(std::span<const std::byte> region) override { return regions_->add(region); }
  Status post(std::span<const ConstBuffer> parts) override {
    for (const ConstBuffer& p : parts) out_.insert(out_.end(), p.data, p.data + p.size);
    return Status::ok();
  }
  Status flush() override { return Status::ok(); }
  Status recv(std::span<std::byte> dst) override {
    if (in_.size() - pos_ < dst.size()) return {Errc::connection_lost, "the wire ended"};
    std::memcpy(dst.data(), in_.data() + pos_, dst.size());
    pos_ += dst.size();
    return Status::ok();
  }
  Status recv_scatter(std::span<const MutableBuffer> parts) override {
    for (const MutableBuffer& p : parts) BNF_TRY(recv({p.data, p.size}));
    return Status::ok();
  }
  void limit_receives(ReceiveLimits) override {}
  void shutdown() noexcept override {}
  ConnectionStats stats() const override { return {}; }
  std::string peer() const override { return "wire"; }

 private:
  Bytes& out_;
  const Bytes& in_;
  size_t pos_ = 0;
  std::shared_ptr<RegionTable> regions_ = std::make_shared<RegionTable>();
};

// Both ends' keys of one handshake (connecting side sends).
std::pair<ChannelKeys, ChannelKeys> handshake_keys(Protection p, uint8_t nonce_seed = 1) {
  const proto::PeerKey key = proto::PeerKey::generate();
  proto::Nonce c{}, l{};
  c[0] = nonce_seed;
  l[0] = static_cast<uint8_t>(nonce_seed + 100);
  auto a = proto::derive_channel_keys(key, proto::PeerRole::connecting, c, l, p);
  auto b = proto::derive_channel_keys(key, proto::PeerRole::listening, c, l, p);
  EXPECT_TRUE(a.is_ok() && b.is_ok());
  return {*a, *b};
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
  return b;
}

struct Pipe {
  Bytes wire;
  Bytes unused;
  std::unique_ptr<SecureConnection> sender;
  ChannelKeys receiver_keys;
};

Pipe make_pipe(Protection p) {
  Pipe pipe;
  auto [s, r] = handshake_keys(p);
  pipe.sender = *SecureConnection::over(std::make_unique<WireBuffer>(pipe.wire, pipe.unused), s);
  pipe.receiver_keys = r;
  return pipe;
}

std::unique_ptr<SecureConnection> receiver_of(const Bytes& wire, Bytes& unused, const ChannelKeys& k) {
  return *SecureConnection::over(std::make_unique<WireBuffer>(unused, wire), k);
}

// A frame-like post: a small header, small metadata, then large page parts.
Status post_frame(Connection& c, const Bytes& header, const Bytes& pages) {
  const ConstBuffer parts[] = {{header.data(), header.size()},
                               {pages.data(), pages.size() / 2},
                               {pages.data() + pages.size() / 2, pages.size() - pages.size() / 2}};
  return c.post(parts);
}

// Record boundaries of a wire: [offset, offset + 4 + length + 16).
std::vector<std::pair<size_t, size_t>> records(const Bytes& wire) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t off = 0; off + 4 <= wire.size();) {
    uint32_t len = 0;
    std::memcpy(&len, wire.data() + off, 4);
    const size_t total = 4 + len + SecureConnection::kTagBytes;
    out.emplace_back(off, total);
    off += total;
  }
  return out;
}

class SecureChannel : public ::testing::TestWithParam<Protection> {};

TEST_P(SecureChannel, BytesArriveWholeWhateverTheReadsLookLike) {
  Pipe p = make_pipe(GetParam());
  const Bytes header = pattern(48, 1);
  const Bytes pages = pattern(3 * SecureConnection::kMaxRecord + 12288, 2);  // several records
  ASSERT_TRUE(post_frame(*p.sender, header, pages).is_ok());
  ASSERT_TRUE(post_frame(*p.sender, header, pages).is_ok());
  ASSERT_TRUE(p.sender->flush().is_ok());
  auto r = receiver_of(p.wire, p.unused, p.receiver_keys);
  // First frame: as the protocol reads (header, then the payload scattered).
  Bytes h(48), a(pages.size() / 3), b(pages.size() - pages.size() / 3);
  ASSERT_TRUE(r->recv(h).is_ok());
  EXPECT_EQ(h, header);
  const MutableBuffer parts[] = {{a.data(), a.size()}, {b.data(), b.size()}};
  ASSERT_TRUE(r->recv_scatter(parts).is_ok());
  a.insert(a.end(), b.begin(), b.end());
  EXPECT_EQ(a, pages);
  // Second frame: odd-sized reads that straddle the records.
  Bytes all;
  for (size_t want = 7; all.size() < header.size() + pages.size(); want = want * 3 + 1) {
    Bytes piece(std::min(want, header.size() + pages.size() - all.size()));
    ASSERT_TRUE(r->recv(piece).is_ok());
    all.insert(all.end(), piece.begin(), piece.end());
  }
  EXPECT_TRUE(std::equal(header.begin(), header.end(), all.begin()));
  EXPECT_TRUE(std::equal(pages.begin(), pages.end(), all.begin() + 48));
  EXPECT_FALSE(r->has_pending_input());
}

TEST_P(SecureChannel, AReadOfPartOfARecordLeavesTheRestPending) {
  Pipe p = make_pipe(GetParam());
  const Bytes small = pattern(100, 3);
  const ConstBuffer one{small.data(), small.size()};
  ASSERT_TRUE(p.sender->post(std::span<const ConstBuffer>(&one, 1)).is_ok());
  auto r = receiver_of(p.wire, p.unused, p.receiver_keys);
  Bytes first(40), rest(60);
  ASSERT_TRUE(r->recv(first).is_ok());
  EXPECT_TRUE(r->has_pending_input());  // a poll on the socket would not see these
  ASSERT_TRUE(r->recv(rest).is_ok());
  EXPECT_FALSE(r->has_pending_input());
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(first, small);
}

// Sends three records (each a small post) and returns the wire and receiver keys.
Pipe three_records(Protection prot) {
  Pipe p = make_pipe(prot);
  for (uint8_t i = 0; i < 3; ++i) {
    const Bytes m = pattern(64, i);
    const ConstBuffer one{m.data(), m.size()};
    EXPECT_TRUE(p.sender->post(std::span<const ConstBuffer>(&one, 1)).is_ok());
  }
  return p;
}

Status read_all_three(const Bytes& wire, const ChannelKeys& k) {
  Bytes unused;
  auto r = receiver_of(wire, unused, k);
  for (int i = 0; i < 3; ++i) {
    Bytes m(64);
    BNF_TRY(r->recv(m));
  }
  return Status::ok();
}

void expect_refused(const Status& st) {
  EXPECT_EQ(st.code(), Errc::corrupt) << st.message();
  EXPECT_NE(st.message().find("failed authentication"), std::string::npos) << st.message();
}

TEST_P(SecureChannel, AnAlteredByteAnywhereInARecordIsRefused) {
  Pipe p = three_records(GetParam());
  ASSERT_TRUE(read_all_three(p.wire, p.receiver_keys).is_ok());
  const auto recs = records(p.wire);
  ASSERT_EQ(recs.size(), 3U);
  for (size_t at : {recs[1].first + 4, recs[1].first + 40, recs[1].first + recs[1].second - 1}) {
    Bytes altered = p.wire;
    altered[at] ^= std::byte{0x01};
    expect_refused(read_all_three(altered, p.receiver_keys));
  }
}

TEST_P(SecureChannel, DroppedReplayedOrReorderedRecordsAreRefused) {
  Pipe p = three_records(GetParam());
  const auto recs = records(p.wire);
  auto rec = [&](size_t i) {
    return Bytes(p.wire.begin() + static_cast<long>(recs[i].first),
                 p.wire.begin() + static_cast<long>(recs[i].first + recs[i].second));
  };
  auto join = [&](std::initializer_list<size_t> order) {
    Bytes w;
    for (size_t i : order) {
      const Bytes r = rec(i);
      w.insert(w.end(), r.begin(), r.end());
    }
    return w;
  };
  expect_refused(read_all_three(join({0, 2, 1}), p.receiver_keys));  // dropped (then the rest)
  expect_refused(read_all_three(join({0, 0, 1}), p.receiver_keys));  // replayed
  expect_refused(read_all_three(join({1, 0, 2}), p.receiver_keys));  // reordered
}

TEST_P(SecureChannel, ARecordFromAnotherConnectionIsRefused) {
  Pipe p = three_records(GetParam());
  Pipe other = three_records(GetParam());  // another handshake: other nonces, other keys
  Bytes mixed = other.wire;
  const auto recs = records(p.wire);
  std::copy(p.wire.begin(), p.wire.begin() + static_cast<long>(recs[0].second), mixed.begin());
  expect_refused(read_all_three(mixed, other.receiver_keys));
}

TEST_P(SecureChannel, AnOversizedLengthIsRefusedBeforeAnythingIsAllocated) {
  Pipe p = three_records(GetParam());
  Bytes w = p.wire;
  const uint32_t huge = 0x7fffffff;
  std::memcpy(w.data(), &huge, 4);
  const Status st = read_all_three(w, p.receiver_keys);
  EXPECT_EQ(st.code(), Errc::corrupt);
  EXPECT_NE(st.message().find("at most"), std::string::npos) << st.message();
}

TEST_P(SecureChannel, BothEndsExportTheSameSecretAndOnlyThey) {
  auto [a, b] = handshake_keys(GetParam());
  auto [c, d] = handshake_keys(GetParam(), 7);
  Bytes w1, w2;
  auto ea = *SecureConnection::over(std::make_unique<WireBuffer>(w1, w2), a);
  auto eb = *SecureConnection::over(std::make_unique<WireBuffer>(w1, w2), b);
  auto ec = *SecureConnection::over(std::make_unique<WireBuffer>(w1, w2), c);
  EXPECT_EQ(*ea->keying_material("x"), *eb->keying_material("x"));
  EXPECT_NE(*ea->keying_material("x"), *ea->keying_material("y"));
  EXPECT_NE(*ea->keying_material("x"), *ec->keying_material("x"));
  // The digest key crosses sealed, and only the same connection opens it.
  const DigestKey key = random_digest_key();
  auto sealed = proto::seal_digest_key(*ea, key);
  ASSERT_TRUE(sealed.is_ok());
  EXPECT_EQ(sealed->find(to_hex(key)), std::string::npos);
  EXPECT_EQ(*proto::open_digest_key(*eb, *sealed), key);
  EXPECT_NE(*proto::open_digest_key(*ec, *sealed), key);
}

INSTANTIATE_TEST_SUITE_P(Protections, SecureChannel, ::testing::Values(Protection::encrypted, Protection::integrity),
                         [](const auto& info) { return std::string(protection_name(info.param)); });

TEST(SecureChannelEncryption, EncryptedPagesAreNotOnTheWireAndIntegrityOnlyOnesAre) {
  const Bytes header = pattern(32, 9);
  const Bytes pages = pattern(64 << 10, 10);
  auto contains = [&](const Bytes& wire) {
    return std::search(wire.begin(), wire.end(), pages.begin(), pages.begin() + 4096) != wire.end();
  };
  Pipe enc = make_pipe(Protection::encrypted);
  ASSERT_TRUE(post_frame(*enc.sender, header, pages).is_ok());
  EXPECT_FALSE(contains(enc.wire));
  Pipe mac = make_pipe(Protection::integrity);
  ASSERT_TRUE(post_frame(*mac.sender, header, pages).is_ok());
  EXPECT_TRUE(contains(mac.wire));
}

TEST(SecureChannelKeys, EachDirectionHasItsOwnKey) {
  auto [a, b] = handshake_keys(Protection::encrypted);
  EXPECT_EQ(a.send.key, b.recv.key);
  EXPECT_EQ(a.recv.key, b.send.key);
  EXPECT_NE(a.send.key, a.recv.key);  // no record can be reflected back to its sender
  auto [i, j] = handshake_keys(Protection::integrity);
  EXPECT_NE(a.send.key, i.send.key);  // the protection is part of the derivation
}

}  // namespace
}  // namespace bnf::transport
