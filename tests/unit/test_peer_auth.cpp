// Peer authentication: both sides of a connection prove the same peer key
// before either acts on a frame; the key file's rules. Over the in-memory
// transport (the daemon's use of it: test_push_mem).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <future>
#include <tuple>

#include "protocol/authenticated_transport.hpp"
#include "protocol/control.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"

namespace bnf::proto {
namespace {

const Endpoint kListening = *parse_endpoint("bnf+mem:listening");

// One connection between a connecting host holding `theirs` and a listening
// host holding `ours`; returns both sides' outcomes.
std::pair<Status, Status> exchange(const PeerKey& theirs, const PeerKey& ours) {
  transport::MemNetwork net;
  auto l = net.transport()->listen(kListening);
  EXPECT_TRUE(l.is_ok());
  auto listening = std::async(std::launch::async, [&]() -> Status {
    BNF_ASSIGN_OR_RETURN(auto c, (*l)->accept());
    Status st = authenticate_peer(*c, ours, transport::Protection::encrypted).status();
    if (!st.is_ok()) send_error(*c, st);
    return st;
  });
  AuthenticatedTransport t(net.transport(), theirs);
  auto c = t.connect(kListening);
  return {c.status(), listening.get()};
}

TEST(PeerAuth, HostsWithTheSameKeyConnect) {
  const PeerKey k = PeerKey::generate();
  auto [connecting, listening] = exchange(k, k);
  EXPECT_TRUE(connecting.is_ok()) << connecting.message();
  EXPECT_TRUE(listening.is_ok()) << listening.message();
}

TEST(PeerAuth, DifferentKeysAreDeniedOnBothSidesWithTheCause) {
  auto [connecting, listening] = exchange(PeerKey::generate(), PeerKey::generate());
  EXPECT_EQ(connecting.code(), Errc::denied);
  EXPECT_EQ(listening.code(), Errc::denied);
  // The connecting host learns it first (the listening host's proof fails), and names the peer.
  EXPECT_NE(connecting.message().find("peer keys differ"), std::string::npos) << connecting.message();
  EXPECT_NE(connecting.message().find("bnf+mem:listening"), std::string::npos) << connecting.message();
  EXPECT_NE(listening.message().find("peer keys differ"), std::string::npos) << listening.message();
}

TEST(PeerAuth, AConnectionThatSkipsItIsDeniedNamingWhatCameInstead) {
  transport::MemNetwork net;
  auto l = net.transport()->listen(kListening);
  ASSERT_TRUE(l.is_ok());
  auto listening = std::async(std::launch::async, [&]() -> Status {
    BNF_ASSIGN_OR_RETURN(auto c, (*l)->accept());
    return authenticate_peer(*c, PeerKey::generate(), transport::Protection::encrypted).status();
  });
  auto c = net.transport()->connect(kListening);
  ASSERT_TRUE(c.is_ok());
  ASSERT_TRUE(send_control(**c, FrameType::vm_hello, {{"version", kVersion}}).is_ok());
  const Status st = listening.get();
  EXPECT_EQ(st.code(), Errc::denied);
  EXPECT_NE(st.message().find("VM_HELLO, not PEER_HELLO"), std::string::npos) << st.message();
}

// The protection a connection gets when the connecting host asks for `asked`
// and the listening host wants `wanted`, as each side sees it.
std::pair<Result<transport::ChannelKeys>, Result<transport::ChannelKeys>> negotiate(transport::Protection asked,
                                                                                    transport::Protection wanted) {
  const PeerKey k = PeerKey::generate();
  transport::MemNetwork net;
  auto l = net.transport()->listen(kListening);
  EXPECT_TRUE(l.is_ok());
  auto listening = std::async(std::launch::async, [&]() -> Result<transport::ChannelKeys> {
    BNF_ASSIGN_OR_RETURN(auto c, (*l)->accept());
    return authenticate_peer(*c, k, wanted);
  });
  auto c = net.transport()->connect(kListening);
  EXPECT_TRUE(c.is_ok());
  auto connecting = authenticate_to_peer(**c, k, "listening", asked);
  return {std::move(connecting), listening.get()};
}

TEST(PeerAuth, TheChannelIsEncryptedUnlessBothHostsTurnedItOff) {
  using transport::Protection;
  for (auto [asked, wanted, agreed] :
       {std::tuple{Protection::encrypted, Protection::encrypted, Protection::encrypted},
        std::tuple{Protection::encrypted, Protection::integrity, Protection::encrypted},
        std::tuple{Protection::integrity, Protection::encrypted, Protection::encrypted},
        std::tuple{Protection::integrity, Protection::integrity, Protection::integrity}}) {
    auto [connecting, listening] = negotiate(asked, wanted);
    ASSERT_TRUE(connecting.is_ok()) << connecting.status().message();
    ASSERT_TRUE(listening.is_ok()) << listening.status().message();
    EXPECT_EQ(connecting->protection, agreed);
    EXPECT_EQ(listening->protection, agreed);
    EXPECT_EQ(connecting->send.key, listening->recv.key);
    EXPECT_EQ(connecting->exporter, listening->exporter);
  }
}

TEST(PeerAuth, ProofsDependOnRoleNoncesAndKey) {
  const PeerKey k = PeerKey::generate();
  Nonce a{}, b{};
  a[0] = 1;
  b[0] = 2;
  using transport::Protection;
  const Proof p = peer_proof(k, PeerRole::connecting, a, b, Protection::encrypted);
  EXPECT_EQ(p, peer_proof(k, PeerRole::connecting, a, b, Protection::encrypted));
  EXPECT_NE(p, peer_proof(k, PeerRole::listening, a, b, Protection::encrypted));  // one side's proof is not the other's
  EXPECT_NE(p, peer_proof(k, PeerRole::connecting, b, a, Protection::encrypted));
  EXPECT_NE(p, peer_proof(PeerKey::generate(), PeerRole::connecting, a, b, Protection::encrypted));
  EXPECT_NE(p, peer_proof(k, PeerRole::connecting, a, b, Protection::integrity));  // the agreed protection is bound
}

TEST(PeerKeyFile, CreatedPrivateOnceAndLoadedAgain) {
  test::TempDir d;
  const std::string path = d.path() + "/sub/peer.key";
  auto created = PeerKey::load_or_create(path);
  ASSERT_TRUE(created.is_ok()) << created.status().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  auto again = PeerKey::load_or_create(path);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->bytes(), created->bytes());
}

TEST(PeerKeyFile, ProcessesCreatingAtOnceShareOneKey) {
  test::TempDir d;
  const std::string path = d.path() + "/peer.key";
  std::vector<std::future<Result<PeerKey>>> racers;
  for (int i = 0; i < 4; ++i)
    racers.push_back(std::async(std::launch::async, [&] { return PeerKey::load_or_create(path); }));
  std::vector<PeerKey::Bytes> keys;
  for (auto& r : racers) {
    auto k = r.get();
    ASSERT_TRUE(k.is_ok()) << k.status().message();
    keys.push_back(k->bytes());
  }
  for (const auto& k : keys) EXPECT_EQ(k, keys[0]);
}

TEST(PeerKeyFile, AFileOthersCanReadOrThatIsNotAKeyIsRefused) {
  test::TempDir d;
  const std::string path = d.path() + "/peer.key";
  ASSERT_TRUE(PeerKey::load_or_create(path).is_ok());
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto shared = PeerKey::load(path);
  ASSERT_FALSE(shared.is_ok());
  EXPECT_NE(shared.status().message().find("chmod 600"), std::string::npos) << shared.status().message();

  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  std::ofstream(path) << "not a key\n";
  auto garbage = PeerKey::load(path);
  ASSERT_FALSE(garbage.is_ok());
  EXPECT_NE(garbage.status().message().find("64 hex digits"), std::string::npos) << garbage.status().message();

  auto missing = PeerKey::load(d.path() + "/none.key");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("none.key"), std::string::npos) << missing.status().message();
}

}  // namespace
}  // namespace bnf::proto
