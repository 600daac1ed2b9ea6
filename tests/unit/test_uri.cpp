#include <gtest/gtest.h>

#include "common/uri.hpp"

namespace bnf {
namespace {

TEST(Endpoint, ParsesQemuStyleAndUrlStyle) {
  for (const char* s : {"bnf+tcp:10.0.0.2:7070", "bnf+tcp://10.0.0.2:7070"}) {
    auto ep = parse_endpoint(s);
    ASSERT_TRUE(ep.is_ok()) << s;
    EXPECT_EQ(ep->scheme, "tcp");
    EXPECT_EQ(ep->host, "10.0.0.2");
    EXPECT_EQ(ep->port, 7070);
  }
  auto v6 = parse_endpoint("bnf+tcp:[::1]:9");
  ASSERT_TRUE(v6.is_ok());
  EXPECT_EQ(v6->host, "::1");
}

TEST(Endpoint, RejectsBadInputWithAReason) {
  for (const char* s :
       {"tcp:1.2.3.4:5", "bnf+tcp:host", "bnf+tcp:host:99999", "bnf+tcp:host:x", "bnf+rdmx:a:1", "bnf+tcp::5"}) {
    auto ep = parse_endpoint(s);
    EXPECT_FALSE(ep.is_ok()) << s;
    EXPECT_EQ(ep.status().code(), Errc::invalid_argument);
    EXPECT_NE(ep.status().message().find(s), std::string::npos);
  }
}

}  // namespace
}  // namespace bnf
