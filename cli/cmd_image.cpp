#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <random>

#include "commands.hpp"
#include "common/files.hpp"
#include "common/page.hpp"
#include "common/size.hpp"
#include "protocol/authenticated_transport.hpp"
#include "push/push_sender.hpp"
#include "push/push_state.hpp"
#include "snapshot/snapshot_store.hpp"
#include "transport/uring_tcp/uring_tcp.hpp"

namespace bnf::cli {

namespace {

struct PushArgs {
  std::string file;
  std::string name;
  std::string to;
  std::string dirty_bitmap;
  std::string state_file;
  unsigned streams = 1;
  bool json = false;
  bool full = false;
  bool no_state = false;
  std::string zero_copy = "auto";
  std::string encryption = "on";
  std::string peer_key;
};

std::string host_id() {
  char h[256] = {};
  ::gethostname(h, sizeof h - 1);
  return fmt::format("{}:{}", h, ::getpid());
}

int run_push(const PushArgs& a) {
  std::signal(SIGPIPE, SIG_IGN);
  auto ep = parse_endpoint(a.to);
  if (!ep.is_ok()) return fail(ep.status().message());
  if (Status s = SnapshotStore::validate_name(a.name); !s.is_ok()) return fail(s.message());
  auto fd = open_file(a.file, O_RDONLY);
  if (!fd.is_ok()) return fail(fd.status().message());
  auto size = file_size(fd->get());
  if (!size.is_ok()) return fail(size.status().message());
  auto map = map_file(fd->get(), *size, false);
  if (!map.is_ok()) return fail(map.status().message());
  std::optional<PageBitmap> dirty;
  if (!a.dirty_bitmap.empty()) {
    auto text = read_file(a.dirty_bitmap);
    if (!text.is_ok()) return fail(text.status().message());
    auto bm = PageBitmap::deserialize(*text);
    if (!bm.is_ok()) return fail(bm.status().context(a.dirty_bitmap).message());
    dirty = std::move(bm).value();
  }
  PushOptions o;
  o.name = a.name;
  o.to = *ep;
  o.streams = a.streams;
  o.dirty = dirty ? &*dirty : nullptr;
  o.force_full = a.full;
  o.sender_id = host_id();
  if (!a.no_state)
    o.state_file = a.state_file.empty() ? default_push_state_path(ep->to_string(), a.name) : a.state_file;
  o.note = [](const std::string& m) { fmt::print(stderr, "bnf: {}\n", m); };
  auto key = proto::PeerKey::load(a.peer_key);
  if (!key.is_ok()) return fail(key.status().message());
  transport::UringTcpOptions topts;
  auto zero_copy = transport::parse_zero_copy(a.zero_copy);
  if (!zero_copy.is_ok()) return fail(zero_copy.status().message());
  topts.zero_copy = *zero_copy;
  const auto protection = *parse_choice(kEncryptions, "--encryption", a.encryption);  // checked at parse time
  proto::AuthenticatedTransport t(transport::make_uring_tcp_transport(topts), *key, protection);
  auto rep = push_image(t, map->bytes(), o);
  if (!rep.is_ok()) return fail(rep.status().message());
  if (a.json)
    fmt::print("{}\n", rep->to_json().dump());
  else
    fmt::print("{}", rep->to_text());
  return 0;
}

// Test and demo images: random pages, with a share of zero pages.
int run_make(const std::string& file, const std::string& size_s, double zero_percent, uint64_t seed) {
  auto parsed = parse_size(size_s);
  if (!parsed.is_ok()) return fail("--size: " + parsed.status().message());
  const uint64_t size = *parsed;
  if (size == 0 || size % kPageSize != 0)
    return fail(fmt::format("--size must be a non-zero multiple of {}", kPageSize));
  auto fd = open_file(file, O_RDWR | O_CREAT | O_TRUNC, kUserFileMode);
  if (!fd.is_ok()) return fail(fd.status().message());
  if (::ftruncate(fd->get(), static_cast<off_t>(size)) != 0) return fail("resize " + file + ": " + errno_text(errno));
  auto map = map_file(fd->get(), size, true);
  if (!map.is_ok()) return fail(map.status().message());
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> pct(0, 100);
  for (uint64_t p = 0; p < size / kPageSize; ++p) {
    if (pct(rng) < zero_percent) continue;
    auto* w = reinterpret_cast<uint64_t*>(map->data() + p * kPageSize);
    for (int i = 0; i < 512; ++i) w[i] = rng();
  }
  return 0;
}

// Rewrites a share of pages at random and records them in a dirty bitmap.
int run_mutate(const std::string& file, double percent, const std::string& bitmap_out, uint64_t seed) {
  auto fd = open_file(file, O_RDWR);
  if (!fd.is_ok()) return fail(fd.status().message());
  auto size = file_size(fd->get());
  if (!size.is_ok()) return fail(size.status().message());
  auto map = map_file(fd->get(), *size, true);
  if (!map.is_ok()) return fail(map.status().message());
  const uint64_t pages = *size / kPageSize;
  const auto n = static_cast<uint64_t>(static_cast<double>(pages) * percent / 100.0);
  PageBitmap bm(pages);
  std::mt19937_64 rng(seed);
  while (bm.count() < n) {
    const uint64_t p = rng() % pages;
    if (bm.test_and_set(p)) continue;
    auto* w = reinterpret_cast<uint64_t*>(map->data() + p * kPageSize);
    for (int i = 0; i < 512; ++i) w[i] = rng();
  }
  if (!bitmap_out.empty()) {
    if (Status s = write_file_atomic(bitmap_out, bm.serialize(), kUserFileMode); !s.is_ok()) return fail(s.message());
  }
  fmt::print("changed {} of {} pages\n", n, pages);
  return 0;
}

}  // namespace

void add_image_commands(CLI::App& app, int& rc) {
  CLI::App* image = app.add_subcommand("image", "memory images: push into a daemon's snapshot, make test images");
  image->require_subcommand(1);

  auto a = std::make_shared<PushArgs>();
  CLI::App* push = image->add_subcommand("push", "transfer FILE into the daemon's snapshot NAME, only changed pages");
  push->add_option("file", a->file, "memory image file")->required();
  push->add_option("--name", a->name, "snapshot name on the daemon")->required();
  push->add_option("--to", a->to, "daemon endpoint, bnf+tcp:HOST:PORT")->required();
  push->add_option("--peer-key", a->peer_key, "the daemon's peer key file (its STATE_DIR/peer.key by default)")
      ->required();
  push->add_option("--dirty-bitmap", a->dirty_bitmap, "pages changed since the last push (bnf bitmap file)");
  push->add_option("--streams", a->streams, "data connections")->capture_default_str();
  push->add_option("--state", a->state_file, "push state file (default under ~/.local/state/bnf/push)");
  push->add_flag("--no-state", a->no_state, "keep no push state (the daemon's digest table is fetched instead)");
  push->add_flag("--full", a->full, "ignore the daemon's base and replace the snapshot");
  push->add_flag("--json", a->json, "print the summary as one JSON object");
  // Refused at parse time by the engine's own list of modes, whose error names the value.
  push->add_option("--zero-copy", a->zero_copy, "SEND_ZC: auto (not to loopback peers), on, off")
      ->check([](const std::string& s) { return transport::parse_zero_copy(s).status().message(); }, "")
      ->capture_default_str();
  push->add_option("--encryption", a->encryption,
                   "on: the push is encrypted (AES-256-GCM); off: only authenticated, if the daemon is off too")
      ->check(CLI::IsMember(choice_names(kEncryptions)))
      ->capture_default_str();
  push->callback([a, &rc] { rc = run_push(*a); });

  auto mk = std::make_shared<std::tuple<std::string, std::string, double, uint64_t>>("", "64M", 10.0, 1);
  CLI::App* make = image->add_subcommand("make", "write a test image of random pages");
  make->add_option("file", std::get<0>(*mk))->required();
  make->add_option("--size", std::get<1>(*mk), "bytes, with K/M/G suffix")->capture_default_str();
  make->add_option("--zero-percent", std::get<2>(*mk), "share of zero pages")->capture_default_str();
  make->add_option("--seed", std::get<3>(*mk))->capture_default_str();
  make->callback([mk, &rc] { rc = run_make(std::get<0>(*mk), std::get<1>(*mk), std::get<2>(*mk), std::get<3>(*mk)); });

  auto mu = std::make_shared<std::tuple<std::string, double, std::string, uint64_t>>("", 1.0, "", 2);
  CLI::App* mutate = image->add_subcommand("mutate", "rewrite a share of an image's pages, record them in a bitmap");
  mutate->add_option("file", std::get<0>(*mu))->required();
  mutate->add_option("--percent", std::get<1>(*mu), "share of pages to rewrite")->capture_default_str();
  mutate->add_option("--bitmap-out", std::get<2>(*mu), "write the changed pages here (for --dirty-bitmap)");
  mutate->add_option("--seed", std::get<3>(*mu))->capture_default_str();
  mutate->callback(
      [mu, &rc] { rc = run_mutate(std::get<0>(*mu), std::get<1>(*mu), std::get<2>(*mu), std::get<3>(*mu)); });
}

}  // namespace bnf::cli
