#include <fmt/format.h>

#include <ctime>

#include "commands.hpp"
#include "doctor.hpp"
#include "snapshot/snapshot_store.hpp"

namespace bnf::cli {

int fail(const std::string& message) {
  fmt::print(stderr, "bnf: error: {}\n", message);
  return 1;
}

namespace {

struct SnapArgs {
  std::string state_dir;
  std::string name;
  bool json = false;
};

std::string when(int64_t t) {
  char buf[32];
  const std::time_t tt = t;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int run_list(const SnapArgs& a) {
  SnapshotStore store(a.state_dir);
  auto list = store.list();
  if (!list.is_ok()) return fail(list.status().message());
  if (a.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const Manifest& m : *list) arr.push_back(nlohmann::json::parse(m.to_json(false)));
    fmt::print("{}\n", arr.dump());
    return 0;
  }
  fmt::print("{:<24} {:>10} {:>6} {:<12} {:<20} {}\n", "NAME", "SIZE", "EPOCH", "MODE", "COMMITTED", "FROM");
  for (const Manifest& m : *list)
    fmt::print("{:<24} {:>9.1f}M {:>6} {:<12} {:<20} {}\n", m.name, m.size_bytes / 1048576.0, m.epoch, m.mode,
               when(m.committed_at), m.committed_from);
  return 0;
}

int run_show(const SnapArgs& a) {
  SnapshotStore store(a.state_dir);
  auto m = store.manifest(a.name);
  if (!m.is_ok()) return fail(m.status().message());
  fmt::print("{}", m->to_json(false));
  return 0;
}

int run_verify(const SnapArgs& a) {
  SnapshotStore store(a.state_dir);
  auto r = store.verify(a.name);
  if (!r.is_ok()) return fail(r.status().message());
  if (a.json) {
    fmt::print("{}\n", nlohmann::json{{"name", a.name},
                                      {"ok", r->ok()},
                                      {"epoch", r->manifest.epoch},
                                      {"pages_checked", r->pages_checked},
                                      {"pages_mismatched", r->pages_mismatched},
                                      {"root_ok", r->root_ok}}
                           .dump());
  } else {
    fmt::print("{}: epoch {}, {} pages checked, {} mismatched, root {}\n", a.name, r->manifest.epoch, r->pages_checked,
               r->pages_mismatched, r->root_ok ? "ok" : "MISMATCH");
  }
  return r->ok() ? 0 : fail("snapshot " + a.name + " does not match its manifest");
}

int run_drop(const SnapArgs& a) {
  SnapshotStore store(a.state_dir);
  if (Status s = store.drop(a.name); !s.is_ok()) return fail(s.message());
  fmt::print("dropped {}\n", a.name);
  return 0;
}

}  // namespace

void add_snapshot_commands(CLI::App& app, int& rc) {
  CLI::App* snap = app.add_subcommand("snapshot", "retained snapshots in a state directory");
  snap->require_subcommand(1);
  struct Sub {
    const char* name;
    const char* help;
    int (*run)(const SnapArgs&);
    bool takes_name;
  };
  static const Sub subs[] = {{"list", "list committed snapshots", run_list, false},
                             {"show", "print a snapshot's manifest", run_show, true},
                             {"verify", "recompute every page digest and check the manifest", run_verify, true},
                             {"drop", "delete a snapshot", run_drop, true}};
  for (const Sub& s : subs) {
    auto a = std::make_shared<SnapArgs>();
    CLI::App* c = snap->add_subcommand(s.name, s.help);
    c->add_option("--state-dir", a->state_dir, "directory of the snapshot store")->required();
    if (s.takes_name) c->add_option("name", a->name, "snapshot name")->required();
    c->add_flag("--json", a->json, "JSON output");
    c->callback([a, &rc, run = s.run] { rc = run(*a); });
  }
}

void add_doctor_command(CLI::App& app, int& rc) {
  auto json = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("doctor", "what this host supports (io_uring, userfaultfd, NUMA, RDMA, DPDK...)");
  c->add_flag("--json", *json, "JSON output");
  c->callback([json, &rc] {
    const auto checks = run_doctor();
    fmt::print("{}", *json ? doctor_json(checks).dump(2) + "\n" : doctor_text(checks));
    rc = 0;
  });
}

}  // namespace bnf::cli
