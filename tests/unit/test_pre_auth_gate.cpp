// Admission of connections that have not authenticated yet: per source and
// in all, places given back when they authenticate or close.
#include <gtest/gtest.h>

#include "agent/pre_auth_gate.hpp"

namespace bnf {
namespace {

TEST(PreAuthGate, EachSourceHasItsCapAndAllTogetherTheirs) {
  PreAuthGate g({.per_source = 2, .total = 3});
  auto a1 = g.admit("10.0.0.1");
  auto a2 = g.admit("10.0.0.1");
  auto a3 = g.admit("10.0.0.1");
  ASSERT_TRUE(a1.ticket && a2.ticket);
  ASSERT_FALSE(a3.ticket);
  EXPECT_NE(a3.refused_because.find("from 10.0.0.1"), std::string::npos) << a3.refused_because;
  auto b1 = g.admit("10.0.0.2");
  ASSERT_TRUE(b1.ticket);
  auto c1 = g.admit("10.0.0.3");
  ASSERT_FALSE(c1.ticket);
  EXPECT_NE(c1.refused_because.find("3 connections are waiting"), std::string::npos) << c1.refused_because;
  EXPECT_EQ(g.waiting(), 3U);
}

TEST(PreAuthGate, ReleasedOrClosedConnectionsGiveTheirPlaceBack) {
  PreAuthGate g({.per_source = 1, .total = 8});
  {
    auto a = g.admit("h");
    ASSERT_TRUE(a.ticket);
    EXPECT_FALSE(g.admit("h").ticket);
    a.ticket->release();  // authenticated
    a.ticket->release();  // once only
    EXPECT_EQ(g.waiting_from("h"), 0U);
    auto b = g.admit("h");
    ASSERT_TRUE(b.ticket);
    PreAuthGate::Ticket moved = std::move(*b.ticket);
    EXPECT_EQ(g.waiting_from("h"), 1U);
  }  // closed
  EXPECT_EQ(g.waiting(), 0U);
}

TEST(PreAuthGate, TheSourceIsThePeersAddressWithoutItsPort) {
  EXPECT_EQ(source_address("127.0.0.2:40000"), "127.0.0.2");
  EXPECT_EQ(source_address("::1:40000"), "::1");
  EXPECT_EQ(source_address("mem-client"), "mem-client");
}

}  // namespace
}  // namespace bnf
