#include "push/push_sender.hpp"

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <thread>

#include "common/elapsed.hpp"
#include "common/page.hpp"
#include "digest/page_digest.hpp"
#include "filter/page_filter.hpp"
#include "protocol/control.hpp"
#include "protocol/peer_auth.hpp"
#include "push/plan_frames.hpp"
#include "push/push_state.hpp"
#include "push/sharding.hpp"

namespace bnf {

using nlohmann::json;
using transport::Connection;
using Clock = std::chrono::steady_clock;

namespace {

struct BaseOffer {
  std::string lineage;
  uint64_t epoch = 0;
  Digest root{};
  uint64_t size_bytes = 0;
};

struct Handshake {
  std::string session;
  DigestKey key{};
  std::optional<BaseOffer> base;
};

Result<Handshake> hello(Connection& c, uint64_t size, const PushOptions& o) {
  json h = {{"version", proto::kVersion}, {"sender", o.sender_id},  {"name", o.name},
            {"size_bytes", size},         {"page_size", kPageSize}, {"streams", o.streams}};
  BNF_TRY(proto::send_control(c, proto::FrameType::hello, h));
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(c, proto::FrameType::accept));
  BNF_ASSIGN_OR_RETURN(json a, proto::parse_json_meta(f));
  Handshake hs;
  BNF_ASSIGN_OR_RETURN(hs.session, proto::field<std::string>(a, "session"));
  BNF_ASSIGN_OR_RETURN(std::string sealed_key, proto::field<std::string>(a, "sealed_key"));
  BNF_ASSIGN_OR_RETURN(hs.key, proto::open_digest_key(c, sealed_key));
  if (a.contains("base") && a["base"].is_object()) {
    const json& b = a["base"];
    BaseOffer off;
    BNF_ASSIGN_OR_RETURN(off.lineage, proto::field<std::string>(b, "lineage"));
    BNF_ASSIGN_OR_RETURN(off.epoch, proto::field<uint64_t>(b, "epoch"));
    BNF_ASSIGN_OR_RETURN(std::string root_hex, proto::field<std::string>(b, "root"));
    BNF_ASSIGN_OR_RETURN(off.root, digest_from_hex(root_hex));
    BNF_ASSIGN_OR_RETURN(off.size_bytes, proto::field<uint64_t>(b, "size_bytes"));
    hs.base = off;
  }
  return hs;
}

// Asks the receiver for its digest table and checks it against the agreed root.
Result<DigestTable> fetch_table(Connection& c, const BaseOffer& base, const PageDigester& h) {
  BNF_TRY(proto::send_control(c, proto::FrameType::table_request, json::object()));
  BNF_ASSIGN_OR_RETURN(proto::Frame f, proto::expect_frame(c, proto::FrameType::table));
  DigestTable t(base.size_bytes / kPageSize);
  if (f.header.payload_len != t.bytes().size()) return Status(Errc::protocol, "digest table has the wrong size");
  BNF_TRY(proto::recv_checked_payload(c, t.writable_bytes(), f.header.payload_crc));
  if (!(t.root(h) == base.root)) return Status(Errc::corrupt, "receiver's digest table does not match its root");
  return t;
}

// Sends one stream's share of the plan and a BARRIER. The image stays
// registered until the BARRIER's flush has sent the last page.
Status send_stream(Connection& c, std::span<const std::byte> image, const PagePlan& plan, unsigned stream,
                   unsigned streams) {
  BNF_ASSIGN_OR_RETURN(const transport::RegionHandle registered, c.register_region(image));
  BNF_ASSIGN_OR_RETURN(const PlanPosted n, post_plan(c, image, plan, stream, streams));
  return proto::send_control(c, proto::FrameType::barrier, {{"round", 1}, {"frames", n.frames}, {"pages", n.pages}});
}

struct StreamResult {
  Status status;
  transport::ConnectionStats stats;
};

// Opens the data connections and runs one sender thread per stream.
std::vector<StreamResult> run_streams(transport::Transport& t, std::span<const std::byte> image, const PagePlan& plan,
                                      const PushOptions& o, const std::string& session) {
  std::vector<StreamResult> results(o.streams);
  std::vector<std::thread> threads;
  for (unsigned s = 0; s < o.streams; ++s) {
    threads.emplace_back([&, s] {
      auto conn = t.connect(o.to);
      if (!conn.is_ok()) {
        results[s].status = conn.status();
        return;
      }
      Connection& c = **conn;
      Status st = proto::send_control(c, proto::FrameType::attach, {{"session", session}, {"stream", s}});
      if (st.is_ok()) st = send_stream(c, image, plan, s, o.streams);
      results[s].status = st.context(fmt::format("stream {}", s));
      results[s].stats = c.stats();
    });
  }
  for (auto& th : threads) th.join();
  return results;
}

void add_stats(PushReport& r, const transport::ConnectionStats& s) {
  r.wire_bytes += s.bytes_sent + s.bytes_received;
  r.zc_bytes += s.zc_bytes;
  r.zc_copied += s.zc_copied;
  r.zc_notifications += s.zc_notifications;
}

void note(const PushOptions& o, const std::string& msg) {
  if (o.note) o.note(msg);
}

// Picks the base to compare against: local state, the receiver's table, or none.
Result<std::optional<DigestTable>> choose_base(Connection& c, const Handshake& hs, const PushOptions& o, uint64_t size,
                                               PushReport& rep, bool& trust_bitmap) {
  trust_bitmap = false;
  if (!hs.base || o.force_full) {
    rep.base_source = "none";
    if (o.dirty != nullptr) rep.fallback = "no base on the receiver: --dirty-bitmap ignored, full transfer";
    return std::optional<DigestTable>();
  }
  if (hs.base->size_bytes != size)
    return Status(Errc::mismatch, fmt::format("size mismatch: snapshot '{}' holds {} bytes, the image has {} "
                                              "(drop the snapshot or push with --full)",
                                              o.name, hs.base->size_bytes, size));
  if (!o.state_file.empty()) {
    auto st = PushState::load(o.state_file);
    if (st.is_ok() && st->lineage == hs.base->lineage && st->epoch == hs.base->epoch && st->root == hs.base->root &&
        st->key == hs.key) {
      rep.base_source = "local-state";
      trust_bitmap = true;
      return std::optional<DigestTable>(std::move(st->table));
    }
  }
  if (o.dirty != nullptr)
    rep.fallback = "the receiver's base is not the one this side pushed last: --dirty-bitmap ignored, digests compared";
  rep.base_source = "receiver-table";
  BNF_ASSIGN_OR_RETURN(DigestTable t, fetch_table(c, *hs.base, PageDigester(hs.key)));
  return std::optional<DigestTable>(std::move(t));
}

}  // namespace

Result<PushReport> push_image(transport::Transport& t, std::span<const std::byte> image, const PushOptions& o) {
  const auto t0 = Clock::now();
  if (image.empty() || image.size() % kPageSize != 0)
    return Status(Errc::invalid_argument, fmt::format("image size must be a non-zero multiple of {} bytes", kPageSize));
  if (o.streams == 0 || o.streams > kMaxStreams)
    return Status(Errc::invalid_argument, fmt::format("--streams must be 1..{}", kMaxStreams));
  if (o.dirty != nullptr && o.dirty->size() != image.size() / kPageSize)
    return Status(Errc::mismatch, fmt::format("dirty bitmap covers {} pages, the image has {}", o.dirty->size(),
                                              image.size() / kPageSize));
  PushReport rep;
  rep.streams = o.streams;
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<Connection> ctl, t.connect(o.to));
  BNF_ASSIGN_OR_RETURN(Handshake hs, hello(*ctl, image.size(), o));
  bool trust_bitmap = false;
  BNF_ASSIGN_OR_RETURN(std::optional<DigestTable> base, choose_base(*ctl, hs, o, image.size(), rep, trust_bitmap));
  if (!rep.fallback.empty()) note(o, rep.fallback);
  rep.mode = base ? "incremental" : "full";
  rep.handshake_seconds = since(t0);

  const auto t1 = Clock::now();
  const PageDigester digester(hs.key);
  FilterInput in{image,           kPageSize, &digester, base ? &*base : nullptr, trust_bitmap ? o.dirty : nullptr,
                 o.digest_threads};
  PagePlan plan = plan_pages(in);
  rep.plan_seconds = since(t1);
  const Digest expected_root = plan.table.root(digester);

  json begin = {{"mode", rep.mode}};
  if (base) begin.update({{"base_lineage", hs.base->lineage}, {"base_epoch", hs.base->epoch}});
  // The pages about to arrive, so the receiver can reserve their space ahead of the streams.
  const std::string incoming = plan.send.serialize();
  BNF_TRY(proto::send_control(*ctl, proto::FrameType::begin, begin, std::as_bytes(std::span(incoming))));
  BNF_TRY(proto::expect_frame(*ctl, proto::FrameType::ready).status());

  const auto t2 = Clock::now();
  Status first_failure;
  for (const StreamResult& r : run_streams(t, image, plan, o, hs.session)) {
    add_stats(rep, r.stats);
    if (!r.status.is_ok() && first_failure.is_ok()) first_failure = r.status;
  }
  if (!first_failure.is_ok()) {
    // Let the receiver name the cause if it knows it better (e.g. "disk full").
    (void)proto::send_control(*ctl, proto::FrameType::abort, {{"reason", first_failure.message()}});
    auto answer = proto::recv_frame(*ctl);
    // The receiver's own failure (out of space, say) names the cause; its
    // report of a broken stream (io) only echoes ours.
    const Status peer = answer.status();
    if (!peer.is_ok() && peer.from_peer() && peer.code() != Errc::io) return peer;
    return first_failure;
  }
  rep.transfer_seconds = since(t2);

  const auto t3 = Clock::now();
  BNF_TRY(proto::send_control(*ctl, proto::FrameType::commit,
                              {{"root", digest_hex(expected_root)}, {"pages_sent", plan.pages_sent}}));
  BNF_ASSIGN_OR_RETURN(proto::Frame done, proto::expect_frame(*ctl, proto::FrameType::committed));
  BNF_ASSIGN_OR_RETURN(json dj, proto::parse_json_meta(done));
  BNF_ASSIGN_OR_RETURN(rep.lineage, proto::field<std::string>(dj, "lineage"));
  BNF_ASSIGN_OR_RETURN(rep.epoch, proto::field<uint64_t>(dj, "epoch"));
  BNF_ASSIGN_OR_RETURN(rep.root, proto::field<std::string>(dj, "root"));
  if (rep.root != digest_hex(expected_root)) return Status(Errc::corrupt, "receiver committed a different root");
  rep.commit_seconds = since(t3);
  add_stats(rep, ctl->stats());

  if (!o.state_file.empty()) {
    PushState st{rep.lineage, rep.epoch, expected_root, hs.key, image.size(), std::move(plan.table)};
    if (Status s = st.save(o.state_file); !s.is_ok()) note(o, "warning: could not save push state: " + s.message());
  }
  rep.pages_total = plan.pages_total;
  rep.pages_sent = plan.pages_sent;
  rep.pages_skipped = plan.pages_skipped;
  rep.pages_zero = plan.pages_zero;
  rep.payload_bytes = plan.pages_sent * kPageSize;
  rep.seconds = since(t0);
  return rep;
}

json PushReport::to_json() const {
  json j = trip_json();
  j.update({{"payload_bytes", payload_bytes},
            {"throughput_mib_s", throughput_mib_s()},
            {"streams", streams},
            {"base_source", base_source},
            {"root", root},
            {"phases",
             {{"handshake", handshake_seconds},
              {"plan", plan_seconds},
              {"transfer", transfer_seconds},
              {"commit", commit_seconds}}},
            {"zero_copy", {{"bytes", zc_bytes}, {"notifications", zc_notifications}, {"copied", zc_copied}}}});
  return j;
}

std::string PushReport::to_text() const {
  std::string s = fmt::format(
      "mode {}: {} pages, sent {}, skipped {}, zero {}\n"
      "wire {:.1f} MiB in {:.3f} s ({:.0f} MiB/s of pages) over {} stream(s); epoch {} of lineage {}\n"
      "phases: handshake {:.3f} s, plan {:.3f} s, transfer {:.3f} s, commit {:.3f} s\n",
      mode, pages_total, pages_sent, pages_skipped, pages_zero, wire_bytes / 1048576.0, seconds, throughput_mib_s(),
      streams, epoch, lineage, handshake_seconds, plan_seconds, transfer_seconds, commit_seconds);
  if (!fallback.empty()) s += "note: " + fallback + "\n";
  return s;
}

}  // namespace bnf
