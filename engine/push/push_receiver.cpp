#include "push/push_receiver.hpp"

#include <fmt/format.h>

#include <atomic>
#include <chrono>

#include "common/crc32c.hpp"
#include "common/page.hpp"
#include "common/peer_text.hpp"
#include "protocol/control.hpp"
#include "protocol/peer_auth.hpp"
#include "push/landing.hpp"
#include "push/sharding.hpp"
#include "snapshot/space_check.hpp"

namespace bnf {

using nlohmann::json;
using proto::FrameType;
using transport::Connection;

// State shared by a session's control connection and its data connections.
class PushSession {
 public:
  PushSession(std::unique_ptr<SnapshotWriter> w, const DigestKey& key, unsigned streams)
      : writer(std::move(w)), digester(key), streams(streams), done(streams, false) {}

  // First failure wins; wakes the control connection.
  void fail(const Status& s) {
    std::lock_guard lk(mu);
    if (failure.is_ok()) failure = s;
    cv.notify_all();
  }
  void stream_done(unsigned s) {
    std::lock_guard lk(mu);
    done[s] = true;
    cv.notify_all();
  }
  bool attach(unsigned s, Connection* c) {
    std::lock_guard lk(mu);
    if (s >= streams || attached.count(s) != 0 || closing) return false;
    attached[s] = c;
    touch();
    return true;
  }
  // Something arrived on one of the session's data connections.
  void touch() noexcept { last_activity_ns_ = now_ns(); }
  [[nodiscard]] bool active_within(std::chrono::milliseconds t) const noexcept {
    return now_ns() - last_activity_ns_.load() < std::chrono::duration_cast<std::chrono::nanoseconds>(t).count();
  }
  void detach(unsigned s) {
    std::lock_guard lk(mu);
    attached.erase(s);
    cv.notify_all();
  }
  // Waits until every stream passed its barrier, or something failed.
  Status wait_streams(std::chrono::seconds limit) {
    std::unique_lock lk(mu);
    const bool ok = cv.wait_for(
        lk, limit, [&] { return !failure.is_ok() || std::all_of(done.begin(), done.end(), [](bool d) { return d; }); });
    if (!failure.is_ok()) return failure;
    if (!ok) return {Errc::protocol, "data streams did not finish in time"};
    return Status::ok();
  }
  // Stops the data connections and waits for them to let go of the writer.
  void close_streams() {
    std::unique_lock lk(mu);
    closing = true;
    for (auto& [s, c] : attached) c->shutdown();
    cv.wait(lk, [&] { return attached.empty(); });
  }

  std::unique_ptr<SnapshotWriter> writer;
  PageDigester digester;
  unsigned streams;

 private:
  static int64_t now_ns() noexcept { return std::chrono::steady_clock::now().time_since_epoch().count(); }
  std::atomic<int64_t> last_activity_ns_{now_ns()};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<bool> done;
  std::map<unsigned, Connection*> attached;
  bool closing = false;
  Status failure;
};

namespace {
void serve_first_frame(Connection& c, ReceiverContext& ctx);
}

void SessionRegistry::add(const std::string& id, std::shared_ptr<PushSession> s) {
  std::lock_guard lk(mu_);
  sessions_[id] = std::move(s);
}
void SessionRegistry::remove(const std::string& id) {
  std::lock_guard lk(mu_);
  sessions_.erase(id);
}
std::shared_ptr<PushSession> SessionRegistry::find(const std::string& id) {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

namespace {

constexpr auto kStreamWait = std::chrono::seconds(120);

struct Hello {
  std::string sender;
  std::string name;
  uint64_t size_bytes = 0;
  unsigned streams = 1;
};

Result<Hello> parse_hello(const proto::Frame& f) {
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_TRY(proto::check_version(j));
  Hello h;
  BNF_ASSIGN_OR_RETURN(h.sender, proto::field<std::string>(j, "sender"));
  BNF_ASSIGN_OR_RETURN(h.name, proto::field<std::string>(j, "name"));
  BNF_ASSIGN_OR_RETURN(h.size_bytes, proto::field<uint64_t>(j, "size_bytes"));
  BNF_ASSIGN_OR_RETURN(uint32_t page_size, proto::field<uint32_t>(j, "page_size"));
  BNF_ASSIGN_OR_RETURN(h.streams, proto::field<unsigned>(j, "streams"));
  BNF_TRY(SnapshotStore::validate_name(h.name));
  if (page_size != kPageSize)
    return Status(Errc::invalid_argument, fmt::format("only {}-byte pages are supported", kPageSize));
  if (h.size_bytes == 0 || h.size_bytes % page_size != 0)
    return Status(Errc::invalid_argument, fmt::format("image size must be a non-zero multiple of {} bytes", kPageSize));
  BNF_TRY(check_image_size(h.size_bytes));
  if (h.streams == 0 || h.streams > kMaxStreams) return Status(Errc::invalid_argument, "bad stream count");
  return h;
}

Result<std::string> new_session_id() {
  DigestKey k = random_digest_key();
  return to_hex(std::span<const uint8_t>(k.data(), 12));
}

// A data connection: frames until the barrier, then the connection ends.
Status serve_stream(Connection& c, PushSession& s, unsigned stream) {
  uint64_t frames = 0;
  uint64_t pages = 0;
  while (true) {
    BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::recv_frame(c));
    s.touch();
    switch (f.header.type) {
      case FrameType::pages:
        BNF_TRY(land_pages(c, *s.writer, s.digester, stream, s.streams, f));
        s.touch();
        ++frames;
        pages += f.header.payload_len / s.writer->page_size();
        break;
      case FrameType::zeros:
        BNF_TRY(land_zeros(*s.writer, s.digester, stream, s.streams, f));
        ++frames;
        break;
      case FrameType::barrier: {
        BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
        BNF_ASSIGN_OR_RETURN(uint64_t want_frames, proto::field<uint64_t>(j, "frames"));
        BNF_ASSIGN_OR_RETURN(uint64_t want_pages, proto::field<uint64_t>(j, "pages"));
        if (want_frames != frames || want_pages != pages)
          return {Errc::protocol, fmt::format("barrier counts differ: sender says {} frames/{} pages, received {}/{}",
                                              want_frames, want_pages, frames, pages)};
        s.stream_done(stream);
        return Status::ok();
      }
      default:
        return {Errc::protocol, std::string("unexpected ") + proto::type_name(f.header.type) + " on a data stream"};
    }
  }
}

void serve_data(Connection& c, ReceiverContext& ctx, const proto::Frame& attach) {
  auto j = proto::parse_json_meta(attach);
  auto id = j.is_ok() ? proto::field<std::string>(*j, "session") : Result<std::string>(j.status());
  auto stream = j.is_ok() ? proto::field<unsigned>(*j, "stream") : Result<unsigned>(j.status());
  std::shared_ptr<PushSession> s = id.is_ok() ? ctx.sessions.find(*id) : nullptr;
  if (!stream.is_ok() || s == nullptr || !s->attach(*stream, &c)) {
    proto::send_error(c, {Errc::protocol, "ATTACH to an unknown session or stream"});
    return;
  }
  Status st = serve_stream(c, *s, *stream);
  if (!st.is_ok()) {
    ctx.log.warn("stream {} from {}: {}", *stream, c.peer(), st.message());
    s->fail(st);
    proto::send_error(c, st);
  }
  s->detach(*stream);
}

Result<json> accept_message(const Connection& c, const std::string& session, const DigestKey& key,
                            const std::optional<Manifest>& base) {
  BNF_ASSIGN_OR_RETURN(std::string sealed, proto::seal_digest_key(c, key));
  json a = {{"session", session}, {"sealed_key", sealed}, {"base", nullptr}};
  if (base)
    a["base"] = {{"lineage", base->lineage},
                 {"epoch", base->epoch},
                 {"root", digest_hex(base->root)},
                 {"size_bytes", base->size_bytes}};
  return a;
}

Result<WritePlan> parse_begin(const proto::Frame& f, const Hello& h, const DigestKey& key,
                              const std::optional<Manifest>& base, const std::string& peer) {
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(std::string mode_name, proto::field<std::string>(j, "mode"));
  BNF_ASSIGN_OR_RETURN(proto::TransferMode mode,
                       parse_choice(proto::kTransferModes, "BEGIN's mode", mode_name, Errc::protocol));
  WritePlan plan;
  plan.size_bytes = h.size_bytes;
  plan.streams = h.streams;
  plan.peer = h.sender.empty() ? peer : printable_peer_text(h.sender, 64) + " (" + peer + ")";
  plan.key = key;
  if (mode == proto::TransferMode::full) return plan;
  if (!base) return Status(Errc::not_found, "no base snapshot '" + h.name + "' for an incremental transfer");
  plan.full = false;
  BNF_ASSIGN_OR_RETURN(plan.base_lineage, proto::field<std::string>(j, "base_lineage"));
  BNF_ASSIGN_OR_RETURN(plan.base_epoch, proto::field<uint64_t>(j, "base_epoch"));
  return plan;
}

// BEGIN's optional payload: the set of pages that will arrive (a serialized bitmap).
Result<PageBitmap> recv_incoming_set(Connection& c, const proto::Frame& f, uint64_t pages) {
  if (f.header.payload_len == 0) return PageBitmap();
  if (f.header.payload_len > pages / 4 + 4096) return Status(Errc::protocol, "bad frame: BEGIN payload too large");
  std::string data(f.header.payload_len, '\0');
  BNF_TRY(proto::recv_checked_payload(c, std::as_writable_bytes(std::span(data)), f.header.payload_crc));
  BNF_ASSIGN_OR_RETURN(PageBitmap bm, PageBitmap::deserialize(data));
  if (bm.size() != pages) return Status(Errc::protocol, "BEGIN: incoming page set has the wrong size");
  return bm;
}

// While the sender plans its pages (a digest scan of the whole image) the
// control connection is quiet: BEGIN may take this long beyond the peer timeout.
std::chrono::milliseconds planning_allowance(uint64_t size_bytes) {
  constexpr uint64_t kMsPerGiB = 5000;  // reading the image at 200 MiB/s
  return std::chrono::milliseconds((size_bytes >> 30) * kMsPerGiB + kMsPerGiB);
}

// After READY the control connection is quiet while the data streams run: the
// sender counts as gone only when the whole session went silent.
transport::ReceiveLimits session_limits(PushSession& s, std::chrono::milliseconds peer_timeout) {
  return {.idle = peer_timeout, .still_active = [&s, peer_timeout] { return s.active_within(peer_timeout); }};
}

// After READY: waits for COMMIT (or ABORT), then for the streams, then commits.
Status finish_session(Connection& c, PushSession& s, const Logger& log, const std::string& name,
                      std::chrono::milliseconds peer_timeout) {
  c.limit_receives(session_limits(s, peer_timeout));
  auto next = proto::recv_frame(c);
  c.limit_receives({.idle = peer_timeout});  // `s` is not to be called once this returns
  BNF_ASSIGN_OR_RETURN(proto::Frame f, std::move(next));
  if (f.header.type == FrameType::abort) {
    s.close_streams();
    auto j = proto::parse_json_meta(f);
    auto reason = j.is_ok() ? proto::optional_field<std::string>(*j, "reason", "") : Result<std::string>("");
    const std::string why =
        reason.is_ok() && !reason->empty() ? printable_peer_text(*reason) : std::string("no reason given");
    // If a stream already failed, that is the better explanation for the sender.
    Status streams = s.wait_streams(std::chrono::seconds(0));
    return streams.is_ok() || streams.message().starts_with("data streams")
               ? Status(Errc::cancelled, "sender aborted: " + why)
               : streams;
  }
  if (f.header.type != FrameType::commit)
    return {Errc::protocol, std::string("unexpected ") + proto::type_name(f.header.type) + " (expected COMMIT)"};
  BNF_ASSIGN_OR_RETURN(json j, proto::parse_json_meta(f));
  BNF_ASSIGN_OR_RETURN(std::string root_hex, proto::field<std::string>(j, "root"));
  BNF_ASSIGN_OR_RETURN(Digest root, digest_from_hex(root_hex));
  BNF_TRY(s.wait_streams(kStreamWait));
  s.close_streams();
  BNF_ASSIGN_OR_RETURN(Manifest m, s.writer->commit(root, s.digester));
  log.info("snapshot {}: committed epoch {} ({}, {} pages)", name, m.epoch, m.mode, m.pages_landed);
  return proto::send_control(c, FrameType::committed,
                             {{"lineage", m.lineage}, {"epoch", m.epoch}, {"root", digest_hex(m.root)}});
}

Status serve_control(Connection& c, ReceiverContext& ctx, const proto::Frame& hello_frame) {
  BNF_ASSIGN_OR_RETURN(Hello h, parse_hello(hello_frame));
  if (ctx.store.is_live(h.name)) return {Errc::busy, "snapshot '" + h.name + "' is in use by a running VM"};
  std::optional<Manifest> base;
  if (auto m = ctx.store.manifest(h.name); m.is_ok())
    base = std::move(m).value();
  else if (m.status().code() != Errc::not_found)
    return m.status();
  const DigestKey key = base ? base->key : random_digest_key();
  BNF_ASSIGN_OR_RETURN(std::string id, new_session_id());
  BNF_ASSIGN_OR_RETURN(json accept, accept_message(c, id, key, base));
  BNF_TRY(proto::send_control(c, FrameType::accept, accept));
  ctx.log.info("push of '{}' ({} bytes, {} stream(s)) from {}", h.name, h.size_bytes, h.streams, c.peer());

  c.limit_receives({.idle = ctx.peer_timeout + planning_allowance(h.size_bytes)});
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::recv_frame(c));
  if (f.header.type == FrameType::table_request) {
    if (!base) return {Errc::protocol, "TABLE_REQUEST but there is no base"};
    BNF_ASSIGN_OR_RETURN(DigestTable t, ctx.store.load_table(*base));
    BNF_TRY(proto::send_control(c, FrameType::table, {{"pages", t.size()}}, t.bytes()));
    BNF_ASSIGN_OR_RETURN(f, proto::recv_frame(c));
  }
  c.limit_receives({.idle = ctx.peer_timeout});
  if (f.header.type != FrameType::begin)
    return {Errc::protocol, std::string("unexpected ") + proto::type_name(f.header.type) + " (expected BEGIN)"};
  BNF_ASSIGN_OR_RETURN(WritePlan plan, parse_begin(f, h, key, base, c.peer()));
  BNF_ASSIGN_OR_RETURN(PageBitmap incoming, recv_incoming_set(c, f, h.size_bytes / kPageSize));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<SnapshotWriter> w, ctx.store.begin_write(h.name, plan));
  if (incoming.size() != 0) w->reserve_ahead(std::move(incoming));
  auto session = std::make_shared<PushSession>(std::move(w), key, h.streams);
  ctx.sessions.add(id, session);
  Status st = proto::send_control(c, FrameType::ready, json::object());
  if (st.is_ok()) st = finish_session(c, *session, ctx.log, h.name, ctx.peer_timeout);
  session->fail(st.is_ok() ? Status(Errc::cancelled, "session over") : st);
  session->close_streams();
  ctx.sessions.remove(id);
  session->writer.reset();  // no stream touches it any more: an uncommitted transfer rolls back here
  return st;
}

}  // namespace

void serve_connection(Connection& c, ReceiverContext& ctx) {
  serve_first_frame(c, ctx);
  c.shutdown();  // the peer sees the end at once, even while the daemon still holds the connection
}

namespace {
void serve_first_frame(Connection& c, ReceiverContext& ctx) {
  auto first = proto::recv_frame(c);
  if (!first.is_ok()) {
    ctx.log.warn("connection from {}: {}", c.peer(), first.status().message());
    proto::send_error(c, first.status());
    return;
  }
  if (first->header.type == FrameType::attach) {
    serve_data(c, ctx, *first);
    return;
  }
  const bool migration = first->header.type == FrameType::vm_hello || first->header.type == FrameType::vm_stream;
  if (migration && ctx.on_migration) {
    if (Status st = ctx.on_migration(c, *first); !st.is_ok()) {
      ctx.log.warn("migration from {}: {}", c.peer(), st.message());
      proto::send_error(c, st);
    }
    return;
  }
  Status st = first->header.type == FrameType::hello
                  ? serve_control(c, ctx, *first)
                  : Status(Errc::protocol,
                           std::string("unexpected ") + proto::type_name(first->header.type) + " as first frame");
  if (!st.is_ok()) {
    ctx.log.warn("push from {}: {}", c.peer(), st.message());
    proto::send_error(c, st);
  }
}

}  // namespace

}  // namespace bnf
