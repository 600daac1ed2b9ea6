// StreamRendezvous: a direct trip's QEMU stream and its trip find each other
// in either order, only by token and only from the trip's peer host; what
// arrives before the claim is read ahead and handed over first; the stream's
// connection is held until the trip lets it go.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.hpp"
#include "vm/destination/stream_rendezvous.hpp"

namespace bnf::qemu {
namespace {

using namespace std::chrono_literals;

struct SocketPair {
  UniqueFd source;  // the source QEMU's end
  UniqueFd stream;  // the destination daemon's end
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    source = UniqueFd(fds[0]);
    stream = UniqueFd(fds[1]);
  }
  void send(const std::string& s) const { ASSERT_EQ(::write(source.get(), s.data(), s.size()), ssize_t(s.size())); }
};

std::string text(const std::vector<std::byte>& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

TEST(StreamRendezvous, StreamFirstIsReadAheadThenHandedToTheTrip) {
  SocketPair s;
  StreamRendezvous r;
  std::atomic<bool> served{false};
  auto stream = std::async(std::launch::async, [&] {
    Status st = r.serve("t1", "10.0.0.1:40000", s.stream.get(), 5s);
    served = true;
    return st;
  });
  s.send("QEVM header");
  std::this_thread::sleep_for(50ms);  // read ahead by the worker meanwhile
  {
    auto claim = r.claim("t1", "10.0.0.1:7070", 5s);
    ASSERT_TRUE(claim.is_ok()) << claim.status().message();
    EXPECT_EQ(claim->fd(), s.stream.get());
    EXPECT_EQ(text(claim->take_read_ahead()), "QEVM header");
    s.send("rest");  // after the claim: the trip's to read, not the worker's
    char buf[8] = {};
    ASSERT_EQ(::read(claim->fd(), buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf, 4), "rest");
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(served) << "the stream's connection must stay open while the trip holds it";
  }
  EXPECT_TRUE(stream.get().is_ok());
  EXPECT_TRUE(served);
}

TEST(StreamRendezvous, TripFirstWaitsForTheStream) {
  SocketPair s;
  StreamRendezvous r;
  auto trip = std::async(std::launch::async, [&] { return r.claim("t2", "10.0.0.1:7070", 5s); });
  std::this_thread::sleep_for(50ms);
  auto stream = std::async(std::launch::async, [&] { return r.serve("t2", "10.0.0.1:40001", s.stream.get(), 5s); });
  auto claim = trip.get();
  ASSERT_TRUE(claim.is_ok()) << claim.status().message();
  EXPECT_EQ(claim->fd(), s.stream.get());
  { auto gone = std::move(*claim); }
  EXPECT_TRUE(stream.get().is_ok());
}

TEST(StreamRendezvous, ReadAheadStopsAtItsCapAndTheRestWaitsInTheSocket) {
  SocketPair s;
  StreamRendezvous r;
  auto stream = std::async(std::launch::async, [&] { return r.serve("t3", "10.0.0.1:40000", s.stream.get(), 5s); });
  const std::string chunk(1U << 20, 'x');
  std::atomic<size_t> written{0};
  std::thread writer([&] {
    while (written < StreamRendezvous::kReadAheadMax + (4U << 20)) {
      const ssize_t n = ::send(s.source.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      written += static_cast<size_t>(n);
    }
  });
  // Read-ahead has stopped once the writer is stuck: the socket's buffers are
  // full and nothing drains them (no fixed sleep: a slow machine only waits longer).
  size_t seen = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(50ms);
    const size_t now = written;
    if (now >= StreamRendezvous::kReadAheadMax && now == seen) break;
    seen = now;
  }
  auto claim = r.claim("t3", "10.0.0.1:7070", 5s);
  ASSERT_TRUE(claim.is_ok()) << claim.status().message();
  EXPECT_EQ(claim->take_read_ahead().size(), StreamRendezvous::kReadAheadMax);
  ::shutdown(s.stream.get(), SHUT_RDWR);  // the writer stops
  writer.join();
  { auto gone = std::move(*claim); }
  EXPECT_TRUE(stream.get().is_ok());
}

TEST(StreamRendezvous, AStreamFromAnotherHostIsNotTaken) {
  SocketPair s;
  StreamRendezvous r;
  auto stream = std::async(std::launch::async, [&] { return r.serve("t4", "10.9.9.9:40000", s.stream.get(), 300ms); });
  std::this_thread::sleep_for(20ms);
  auto claim = r.claim("t4", "10.0.0.1:7070", 1s);
  ASSERT_FALSE(claim.is_ok());
  EXPECT_NE(claim.status().message().find("came from 10.9.9.9"), std::string::npos) << claim.status().message();
  const Status st = stream.get();  // never claimed: given up
  EXPECT_EQ(st.code(), Errc::unreachable);
  EXPECT_NE(st.message().find("no migration claimed"), std::string::npos) << st.message();
}

TEST(StreamRendezvous, NoStreamInTimeIsNamed) {
  StreamRendezvous r;
  auto claim = r.claim("t5", "10.0.0.1:7070", 50ms);
  ASSERT_FALSE(claim.is_ok());
  EXPECT_EQ(claim.status().code(), Errc::unreachable);
  EXPECT_NE(claim.status().message().find("did not arrive"), std::string::npos);
}

TEST(StreamRendezvous, ATokenServesOneStreamOnly) {
  SocketPair a;
  SocketPair b;
  StreamRendezvous r;
  auto first = std::async(std::launch::async, [&] { return r.serve("t6", "10.0.0.1:40000", a.stream.get(), 300ms); });
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(r.serve("t6", "10.0.0.1:40001", b.stream.get(), 300ms).code(), Errc::protocol);
  EXPECT_EQ(r.serve("", "10.0.0.1:40002", b.stream.get(), 300ms).code(), Errc::protocol);
  EXPECT_EQ(first.get().code(), Errc::unreachable);
}

TEST(StreamRendezvous, HoldsABoundedNumberOfStreams) {
  StreamRendezvous r;
  std::vector<SocketPair> pairs(StreamRendezvous::kMaxHeld + 1);
  std::vector<std::future<Status>> held;
  for (size_t i = 0; i < StreamRendezvous::kMaxHeld; ++i)
    held.push_back(std::async(std::launch::async, [&, i] {
      return r.serve("h" + std::to_string(i), "10.0.0.1:40000", pairs[i].stream.get(), 300ms);
    }));
  std::this_thread::sleep_for(50ms);
  const Status one_more = r.serve("extra", "10.0.0.1:40000", pairs.back().stream.get(), 300ms);
  EXPECT_EQ(one_more.code(), Errc::busy);
  EXPECT_NE(one_more.message().find("held here already"), std::string::npos) << one_more.message();
  for (auto& h : held) EXPECT_EQ(h.get().code(), Errc::unreachable);
}

TEST(StreamRendezvous, IPv6PeersCompareByHost) {
  SocketPair s;
  StreamRendezvous r;
  auto stream = std::async(std::launch::async, [&] { return r.serve("t7", "fd00::2:40000", s.stream.get(), 5s); });
  auto claim = r.claim("t7", "fd00::2:7070", 5s);
  ASSERT_TRUE(claim.is_ok()) << claim.status().message();
  { auto gone = std::move(*claim); }
  EXPECT_TRUE(stream.get().is_ok());
}

}  // namespace
}  // namespace bnf::qemu
