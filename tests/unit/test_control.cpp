// JSON control messages from a peer: strict typed fields (no silent
// conversions, never an exception), the frame-type check before metadata is
// read, and a peer's ERROR reason made printable.
#include <gtest/gtest.h>

#include <cstring>

#include "common/crc32c.hpp"
#include "common/peer_text.hpp"
#include "protocol/control.hpp"
#include "test_util.hpp"
#include "transport/mem/mem_transport.hpp"

namespace bnf::proto {
namespace {

using nlohmann::json;

json parsed(const char* text) { return json::parse(text); }

TEST(Field, IntegersAreTakenOnlyAsIntegersInRange) {
  EXPECT_EQ(*field<uint32_t>(parsed(R"({"v": 4})"), "v"), 4U);
  EXPECT_EQ(*field<uint64_t>(parsed(R"({"v": 18446744073709551615})"), "v"), UINT64_MAX);
  EXPECT_EQ(*field<int>(parsed(R"({"v": -3})"), "v"), -3);
  const char* refused_as_u32[] = {
      R"({"v": -1})",
      R"({"v": 4.0})",
      R"({"v": 4.5})",
      R"({"v": "4"})",
      R"({"v": true})",
      R"({"v": null})",
      R"({"v": 4294967296})",
      R"({"v": 1e30})",
      R"({"v": [4]})",
      R"({"v": {}})",
      R"({"v": 99999999999999999999999})",
  };
  for (const char* text : refused_as_u32) {
    auto r = field<uint32_t>(parsed(text), "v");
    ASSERT_FALSE(r.is_ok()) << text;
    EXPECT_EQ(r.status().code(), Errc::protocol) << text;
    EXPECT_NE(r.status().message().find("'v'"), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(field<uint64_t>(parsed(R"({"v": -1})"), "v").is_ok());
  EXPECT_FALSE(field<int>(parsed(R"({"v": 2147483648})"), "v").is_ok());
  EXPECT_FALSE(field<int>(parsed(R"({"v": -2147483649})"), "v").is_ok());
}

TEST(Field, StringsAndBoolsAreTakenOnlyAsThemselves) {
  EXPECT_EQ(*field<std::string>(parsed(R"({"s": "x"})"), "s"), "x");
  EXPECT_FALSE(field<std::string>(parsed(R"({"s": 1})"), "s").is_ok());
  EXPECT_FALSE(field<std::string>(parsed(R"({"s": null})"), "s").is_ok());
  EXPECT_TRUE(*field<bool>(parsed(R"({"b": true})"), "b"));
  EXPECT_FALSE(field<bool>(parsed(R"({"b": 1})"), "b").is_ok());
  EXPECT_FALSE(field<bool>(parsed(R"({"b": "true"})"), "b").is_ok());
}

TEST(Field, AMissingFieldIsNamedAndANonObjectIsRefused) {
  auto r = field<uint32_t>(parsed(R"({"x": 1})"), "version");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("lacks field 'version'"), std::string::npos);
  EXPECT_FALSE(field<uint32_t>(parsed("[1, 2]"), "version").is_ok());
  EXPECT_FALSE(field<uint32_t>(parsed("7"), "version").is_ok());
}

TEST(Field, OptionalFieldsDefaultOnlyWhenAbsent) {
  EXPECT_EQ(*optional_field<std::string>(parsed("{}"), "s", "d"), "d");
  EXPECT_EQ(*optional_field<std::string>(parsed(R"({"s": null})"), "s", "d"), "d");
  EXPECT_FALSE(optional_field<std::string>(parsed(R"({"s": 5})"), "s", "d").is_ok());
  EXPECT_EQ(field_or<std::string>(parsed(R"({"s": 5})"), "s", "d"), "d");
  EXPECT_EQ(field_or(parsed(R"({"f": "1.5"})"), "f", 2.0), 2.0);
  EXPECT_EQ(field_or(parsed(R"({"f": 1.5})"), "f", 2.0), 1.5);
}

// A named value is parsed by its one table: known names map to their
// values; an unknown one is refused with the given code, naming the allowed
// names and the (printable) name it got, never taken as a default.
TEST(Choice, KnownNamesMapAndUnknownOnesAreRefusedByName) {
  auto full = parse_choice(proto::kTransferModes, "mode", "full", Errc::protocol);
  ASSERT_TRUE(full.is_ok());
  EXPECT_EQ(*full, proto::TransferMode::full);
  EXPECT_EQ(*parse_choice(proto::kTransferModes, "mode", "incremental"), proto::TransferMode::incremental);
  auto bad = parse_choice(proto::kTransferModes, "mode", "Full\n", Errc::protocol);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), Errc::protocol);
  EXPECT_NE(bad.status().message().find("one of full, incremental"), std::string::npos) << bad.status().message();
  EXPECT_EQ(bad.status().message().find('\n'), std::string::npos) << bad.status().message();
  EXPECT_EQ(parse_choice(proto::kTransferModes, "mode", "").status().code(), Errc::invalid_argument);
  const std::vector<std::string> names = choice_names(proto::kTransferModes);
  EXPECT_EQ(names, (std::vector<std::string>{"full", "incremental"}));
}

TEST(PeerText, ControlCharactersAreReplacedAndLengthCapped) {
  EXPECT_EQ(printable_peer_text("disk full"), "disk full");
  EXPECT_EQ(printable_peer_text("a\nbnf-daemon: forged\r\x1b[31mred"), "a?bnf-daemon: forged??[31mred");
  EXPECT_EQ(printable_peer_text(std::string("nul\0in", 6)), "nul?in");
  EXPECT_EQ(printable_peer_text("caf\xc3\xa9"), "caf??");
  const std::string cut = printable_peer_text(std::string(10000, 'x'));
  EXPECT_EQ(cut.size(), kMaxPeerTextLen);
  EXPECT_TRUE(cut.ends_with("..."));
  EXPECT_EQ(printable_peer_text("abcdef", 5), "ab...");
}

// Writes a frame of `type` with `meta` straight onto `c`.
void send_raw(transport::Connection& c, FrameType type, const std::string& meta) {
  FrameHeader h;
  h.type = type;
  h.meta_len = static_cast<uint32_t>(meta.size());
  h.meta_crc = crc32c(meta.data(), meta.size());
  h.payload_crc = crc32c(nullptr, 0);
  const HeaderBytes hb = encode_header(h);
  ASSERT_TRUE(transport::post_bytes(c, hb, std::as_bytes(std::span(meta))).is_ok());
  ASSERT_TRUE(c.flush().is_ok());
}

class Wire : public ::testing::Test {
 protected:
  Wire() {
    listener_ = *net_.transport()->listen(ep_);
    client_ = *net_.transport()->connect(ep_);
    server_ = *listener_->accept();
  }
  transport::MemNetwork net_;
  Endpoint ep_ = *parse_endpoint("bnf+mem:control");
  std::unique_ptr<transport::Listener> listener_;
  std::unique_ptr<transport::Connection> client_;
  std::unique_ptr<transport::Connection> server_;
};

TEST_F(Wire, APeersErrorReasonCannotForgeALogLine) {
  send_raw(*client_, FrameType::error, R"({"reason": "x\nbnf-daemon: [info] forged\u001b[2J", "code": 9})");
  auto f = recv_frame(*server_);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), Errc::no_space);
  EXPECT_EQ(f.status().message(), "peer: x?bnf-daemon: [info] forged?[2J");
}

// Decisions on a peer's failure read its code and origin, never its words.
TEST_F(Wire, APeersErrorKeepsItsCodeAndOriginThroughContext) {
  send_error(*client_, Status(Errc::base_changed, "the retained snapshot was changed behind bnf's back"));
  auto f = recv_frame(*server_);
  ASSERT_FALSE(f.is_ok());
  const Status s = f.status().context("migration of vm failed");
  EXPECT_EQ(s.code(), Errc::base_changed);
  EXPECT_TRUE(s.from_peer());
  EXPECT_EQ(s.peer_reason(), "the retained snapshot was changed behind bnf's back");
  EXPECT_EQ(s.message(), "migration of vm failed: peer: the retained snapshot was changed behind bnf's back");
  EXPECT_FALSE(Status(Errc::base_changed, "peer: the same words, said here").from_peer());
}

TEST_F(Wire, AnErrorWithABadCodeIsStillAnError) {
  send_raw(*client_, FrameType::error, R"({"reason": 5, "code": "9"})");
  auto f = recv_frame(*server_);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), Errc::protocol);
  EXPECT_EQ(f.status().message(), "peer: peer reported an error");
}

TEST_F(Wire, ATighterMetadataBoundIsCheckedBeforeTheMetadataIsRead) {
  send_raw(*client_, FrameType::hello, std::string(600, ' '));
  auto f = recv_frame(*server_, kMaxPeerMetaLen);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find("over the limit 512"), std::string::npos) << f.status().message();
  EXPECT_EQ(server_->stats().bytes_received, kHeaderSize);
}

TEST_F(Wire, ExpectFrameRefusesAnotherTypeBeforeReadingItsMetadata) {
  send_raw(*client_, FrameType::vm_hello, std::string(1000, ' '));
  auto f = expect_frame(*server_, FrameType::peer_proof);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find("unexpected VM_HELLO frame (expected PEER_PROOF)"), std::string::npos);
  EXPECT_EQ(server_->stats().bytes_received, kHeaderSize);
}

TEST_F(Wire, TextThatIsNotUtf8IsSentWithoutAnException) {
  send_error(*server_, Status(Errc::cancelled, "sender aborted: \xff\xfe"));
  auto f = recv_frame(*client_);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), Errc::cancelled);
}

}  // namespace
}  // namespace bnf::proto
