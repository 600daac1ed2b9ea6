#include "vm/destination/direct_arrival.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "common/files.hpp"
#include "common/page.hpp"
#include "protocol/control.hpp"
#include "push/landing.hpp"
#include "stream/stream_rewriter.hpp"
#include "transport/tcp/socket_util.hpp"
#include "vm/trip/main_block.hpp"

namespace bnf::qemu {

using nlohmann::json;

namespace {

// Main-block pages into the image; image space is reserved a chunk at a time
// (a full tmpfs fails the trip here instead of faulting later).
class ArrivalPages final : public PageHandler {
 public:
  ArrivalPages(SnapshotWriter& w, const PageDigester& h)
      : w_(w), h_(h), reserved_((w.pages() + kSettleChunkPages - 1) / kSettleChunkPages, false) {}

  Status on_blocks(const std::vector<RamBlockInfo>& blocks) override {
    return check_main_block(blocks, w_.pages() * kPageSize);
  }

  Result<bool> on_page(const std::string& block, uint64_t offset, const std::byte* data) override {
    if (block != kMainBlock) return true;
    BNF_ASSIGN_OR_RETURN(uint64_t p, page_of(offset));
    BNF_TRY(reserve_chunk_of(p));
    land_page_copy(w_, h_, p, data);
    return false;
  }

  Result<bool> on_zero(const std::string& block, uint64_t offset) override {
    if (block != kMainBlock) return true;
    BNF_ASSIGN_OR_RETURN(uint64_t p, page_of(offset));
    if (w_.table()[p] == h_.zero_digest()) return false;  // a hole or zeroed already
    const PageRun run{p, 1};
    BNF_TRY(land_zero_runs(w_, h_, 0, std::span(&run, 1)));
    return false;
  }

 private:
  Result<uint64_t> page_of(uint64_t offset) const {
    if (offset % kPageSize != 0 || offset / kPageSize >= w_.pages())
      return Status(Errc::protocol, fmt::format("page offset 0x{:x} outside the main RAM block", offset));
    return offset / kPageSize;
  }
  Status reserve_chunk_of(uint64_t p) {
    const uint64_t chunk = p / kSettleChunkPages;
    if (reserved_[chunk]) return Status::ok();
    const uint64_t first = chunk * kSettleChunkPages;
    const PageRun run{first, std::min(kSettleChunkPages, w_.pages() - first)};
    BNF_TRY(w_.prepare_overwrite(0, std::span(&run, 1)));
    reserved_[chunk] = true;
    return Status::ok();
  }

  SnapshotWriter& w_;
  const PageDigester& h_;
  std::vector<bool> reserved_;
};

// Our QEMU's return path, back to the source QEMU, until either side closes.
class ReturnPathRelay {
 public:
  ReturnPathRelay(int qemu_fd, int stream_fd)
      : qemu_fd_(qemu_fd), thread_([qemu_fd, stream_fd] {
          char buf[4096];
          while (true) {
            const ssize_t n = ::read(qemu_fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;
            if (!send_all(stream_fd, {buf, static_cast<size_t>(n)}, "source QEMU (return path)").is_ok()) return;
          }
        }) {}
  ~ReturnPathRelay() {
    ::shutdown(qemu_fd_, SHUT_RD);  // wakes the reader if our QEMU keeps its side open
    thread_.join();
  }
  ReturnPathRelay(const ReturnPathRelay&) = delete;
  ReturnPathRelay& operator=(const ReturnPathRelay&) = delete;

 private:
  int qemu_fd_;
  std::thread thread_;
};

// The rest of the stream into our QEMU; buffered while RAM flows, written
// through once the image is settled (our QEMU must load it all to answer on
// the return path, which is what lets the source QEMU end the stream). Our
// QEMU is connected in the background as it comes up (pages land meanwhile),
// its return path relayed from then on.
//
// The settle runs on a thread of its own while the stream keeps being read
// (device state held here): the source QEMU writes its device state holding
// the lock its QMP needs, and the source daemon, if it was asking QMP
// something at the stop, settles only once QEMU could answer; a device state
// larger than the socket buffers, left unread, would stall both. VM_LANDED
// goes first; what our QEMU still lacks of the small RAM blocks goes to it
// while the settle runs.
class QemuFeed final : public ByteSink {
 public:
  QemuFeed(std::function<Result<int>()> connect, int stream_fd, std::function<Status()> settle)
      : stream_fd_(stream_fd),
        settle_(std::move(settle)),
        connecting_(std::async(std::launch::async, std::move(connect))) {}
  ~QemuFeed() override { (void)finish(); }
  QemuFeed(const QemuFeed&) = delete;
  QemuFeed& operator=(const QemuFeed&) = delete;

  Status write(std::span<const std::byte> src) override {
    std::lock_guard g(mu_);
    kept_.append(reinterpret_cast<const char*>(src.data()), src.size());
    pending_.insert(pending_.end(), src.begin(), src.end());
    return pass_on_locked(false);
  }
  Status flush() override {
    std::lock_guard g(mu_);
    return pass_on_locked(true);
  }
  Status before_device_state() override {
    std::lock_guard g(mu_);
    state_ = State::settling;
    settle_thread_ = std::thread([this] {
      Status st = settle_();
      std::lock_guard lk(mu_);
      if (st.is_ok()) st = flush_locked();
      state_ = st.is_ok() ? State::settled : State::failed;
      settle_status_ = st;
      if (!st.is_ok()) ::shutdown(stream_fd_, SHUT_RDWR);  // the reader stops; the source QEMU fails and runs on
    });
    return flush_locked();  // no device state in it yet
  }
  // Waits for the settle (if it started): its outcome.
  Status finish() {
    if (settle_thread_.joinable()) settle_thread_.join();
    return settle_status_;
  }
  [[nodiscard]] bool settled() const {
    std::lock_guard g(mu_);
    return state_ == State::settled;
  }
  std::string take_kept() {
    std::lock_guard g(mu_);
    return std::move(kept_);
  }

 private:
  // What happens to the pending bytes in each state; `now`: a flush was asked for.
  Status pass_on_locked(bool now) {
    switch (state_) {
      case State::ram:  // once our QEMU is up, the small blocks go to it as they come, not in the downtime
        return now || pending_.size() >= (qemu_up_locked() ? kSmallFlush : kBuffer) ? flush_locked() : Status::ok();
      case State::settling:  // device state waits for the settle
        return Status::ok();
      case State::settled: return flush_locked();
      case State::failed:  // never device state into an unsettled image
        return settle_status_;
    }
    return Status::ok();
  }
  bool qemu_up_locked() const {
    using namespace std::chrono_literals;
    return out_.has_value() || (connecting_.valid() && connecting_.wait_for(0s) == std::future_status::ready);
  }
  Status flush_locked() {
    if (!out_) {
      BNF_TRY(connect_status_);
      Result<int> fd = connecting_.get();
      if (!fd.is_ok()) return connect_status_ = fd.status();
      out_.emplace(*fd);
      relay_.emplace(*fd, stream_fd_);
    }
    constexpr const char* kWhat = "feed the destination QEMU (did it exit? see its qemu.log)";
    BNF_TRY(out_->write(pending_).context(kWhat));
    pending_.clear();
    return out_->flush().context(kWhat);
  }

  static constexpr size_t kBuffer = 1U << 20;
  static constexpr size_t kSmallFlush = 64U << 10;
  // Two threads use a feed: the stream's reader (write, flush,
  // before_device_state) and the settle thread. Set at construction, read by
  // both: stream_fd_, settle_. Guarded by mu_: everything from connecting_
  // to settle_status_, except that finish() reads settle_status_ after the
  // join, when only one thread is left.
  int stream_fd_;
  std::function<Status()> settle_;
  mutable std::mutex mu_;
  std::future<Result<int>> connecting_;  // our QEMU's incoming socket, once it is up
  Status connect_status_ = Status::ok();
  std::vector<std::byte> pending_;
  std::optional<FdSink> out_;
  std::optional<ReturnPathRelay> relay_;  // after out_: stops first
  std::string kept_;
  enum class State { ram, settling, settled, failed } state_ = State::ram;
  Status settle_status_ = Status::ok();
  std::thread settle_thread_;  // last: joined (by finish) before the rest goes
};

// VM_CHUNKS asks for the page digests of the chunks that differ: so only the
// pages that differ travel, not whole chunks.
Status send_chunk_pages(transport::Connection& c, const SnapshotWriter& w, const proto::Frame& f) {
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  const uint64_t n_chunks = (w.pages() + kSettleChunkPages - 1) / kSettleChunkPages;
  if (!j.contains("chunks") || !j["chunks"].is_array() || j["chunks"].size() > n_chunks)
    return {Errc::protocol, "bad frame: VM_CHUNKS without a list of chunks"};
  std::vector<Digest> digests;
  for (const json& v : j["chunks"]) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() >= n_chunks)
      return {Errc::protocol, "bad frame: VM_CHUNKS names a chunk past the image"};
    const uint64_t first = v.get<uint64_t>() * kSettleChunkPages;
    for (uint64_t p = first; p < std::min(w.pages(), first + kSettleChunkPages); ++p) digests.push_back(w.table()[p]);
  }
  return proto::send_control(c, proto::FrameType::vm_chunks, {{"chunks", j["chunks"]}},
                             std::as_bytes(std::span(digests)));
}

}  // namespace

// VM_EXPECT names the stopped VM's root (sent as the source had it, while the
// tail still crossed): if ours is the same, VM_LANDED says so and the device
// state goes on at once. Otherwise VM_LANDED with our chunk digests, the
// source's fixes for the pages that differ, then VM_END.
Result<Digest> settle_with_source(transport::Connection& c, SnapshotWriter& w, const PageDigester& h) {
  BNF_ASSIGN_OR_RETURN(proto::Frame e, proto::expect_frame(c, proto::FrameType::vm_expect));
  BNF_ASSIGN_OR_RETURN(json expect, proto::parse_json_meta(e));
  BNF_ASSIGN_OR_RETURN(std::string expected, proto::field<std::string>(expect, "root"));
  const Digest ours = w.table().root(h);
  if (!expected.empty() && digest_hex(ours) == expected) {
    BNF_TRY(proto::send_control(c, proto::FrameType::vm_landed, {{"chunk_pages", kSettleChunkPages}, {"same", true}}));
    return ours;
  }
  const std::vector<Digest> chunks = w.table().chunk_digests(h, kSettleChunkPages);
  BNF_TRY(proto::send_control(c, proto::FrameType::vm_landed,
                              {{"chunk_pages", kSettleChunkPages}, {"chunks", chunks.size()}},
                              std::as_bytes(std::span(chunks))));
  while (true) {
    BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::recv_frame(c));
    BNF_ASSIGN_OR_RETURN(bool landed, land_if_pages(c, w, h, f));
    if (landed) continue;
    switch (f.header.type) {
      case proto::FrameType::vm_chunks: BNF_TRY(send_chunk_pages(c, w, f)); break;
      case proto::FrameType::vm_end: {
        BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
        BNF_ASSIGN_OR_RETURN(std::string hex, proto::field<std::string>(j, "root"));
        if (hex.empty()) return w.table().root(h);  // the source's check is off: what landed stands
        BNF_ASSIGN_OR_RETURN(Digest root, digest_from_hex(hex));
        if (!(w.table().root(h) == root))
          return Status(Errc::corrupt, "the landed image is not the source's stopped VM (digest roots differ)");
        return root;
      }
      default:
        return Status(Errc::protocol,
                      std::string("unexpected ") + proto::type_name(f.header.type) + " while settling the image");
    }
  }
}

Result<DirectArrival> receive_direct(transport::Connection& c, SnapshotWriter& w, const PageDigester& h,
                                     const std::function<Result<int>()>& connect_qemu, int stream_fd,
                                     std::vector<std::byte> read_ahead) {
  Digest root;
  ArrivalPages pages(w, h);
  std::string kept;
  {
    QemuFeed feed(connect_qemu, stream_fd, [&]() -> Status {
      BNF_ASSIGN_OR_RETURN(root, settle_with_source(c, w, h));
      return Status::ok();
    });
    FdSource src(stream_fd, std::move(read_ahead));
    StreamRewriter rw(src, feed, pages);
    Status st = rw.run();
    if (!st.is_ok()) ::shutdown(stream_fd, SHUT_RDWR);  // the source QEMU fails and runs on
    BNF_TRY(feed.finish());                             // the settle's reason first: it is why the stream broke
    BNF_TRY(st);
    if (!feed.settled()) return Status(Errc::protocol, "the source QEMU's stream ended before device state");
    kept = feed.take_kept();
  }
  return DirectArrival{root, std::move(kept)};
}

}  // namespace bnf::qemu
