#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>

#include "agent/control_server.hpp"
#include "commands.hpp"
#include "common/page.hpp"
#include "common/size.hpp"
#include "launch/vm_definition.hpp"
#include "vm/trip/migration_report.hpp"

namespace bnf::cli {

using nlohmann::json;

namespace {

std::string default_control() {
  const char* env = std::getenv("BNF_CONTROL");  // NOLINT(concurrency-mt-unsafe): no thread sets the environment
  return env != nullptr ? env : "/var/lib/bnf/control.sock";
}

struct VmArgs {
  std::string control = default_control();
  std::string name;
  std::string memory = "1G";
  std::string accel = "tcg";
  std::vector<std::string> extra;
  std::string to;
  int max_downtime_ms = 300;
  std::string switchover_check = "auto";
  std::string write_tracker = "auto";
  std::string mode = "stream";
  unsigned max_rounds = 30;
  bool relay = false;
  bool json = false;
};

// One line, rewritten in place, while a migration runs (on a terminal only).
void print_progress(const json& p) {
  const double total = static_cast<double>(std::max<uint64_t>(1, p.value("pages_total", 1ULL)));
  const double seen = static_cast<double>(p.value("pages_seen", 0ULL));
  fmt::print(stderr,
             "\r{} trip, pass {}: {:5.1f}% of RAM scanned, {} pages sent, {} skipped, {:.1f} MiB on the wire, "
             "{:.1f} s  ",
             p.value("mode", ""), p.value("round", 0ULL), std::min(100.0, 100.0 * seen / total),
             p.value("pages_sent", 0ULL), p.value("pages_skipped", 0ULL),
             static_cast<double>(p.value("wire_bytes", 0ULL)) / 1048576.0, p.value("seconds", 0.0));
  std::fflush(stderr);
}

int call(const VmArgs& a, const json& req, const std::function<void(const json&)>& print_text,
         bool show_progress = false) {
  const bool progress = show_progress && !a.json && ::isatty(STDERR_FILENO) != 0;
  auto r = control_call(a.control, req, progress ? ProgressFn(print_progress) : nullptr);
  if (progress) fmt::print(stderr, "\r\033[K");
  if (!r.is_ok()) return fail(r.status().message());
  if (a.json)
    fmt::print("{}\n", r->dump());
  else
    print_text(*r);
  return 0;
}

void print_vm(const json& v) {
  fmt::print("{:<16} {:<12} host {} pid {} ram {} qmp {}\n", v.value("name", ""), v.value("state", ""),
             v.value("host", ""), v.value("qemu_pid", 0), v.value("ram_file", ""), v.value("qmp_socket", ""));
}

void print_migration(const json& r) {
  const double mib = static_cast<double>(r.value("wire_bytes", 0ULL)) / 1048576.0;
  const double ram_mib = static_cast<double>(r.value("pages_total", 0ULL)) * static_cast<double>(kPageSize) / 1048576.0;
  fmt::print(
      "mode {}{}: {} pages, sent {}, skipped {}, zero {}\n"
      "wire {:.1f} MiB ({:.1f}% of the guest's {:.0f} MiB), total {:.3f} s, downtime {:.0f} ms, {} passes over RAM; "
      "epoch {} of lineage {}\n",
      r.value("mode", ""), r.value("direct", false) ? " (direct: QEMU streamed to the destination daemon)" : "",
      r.value("pages_total", 0ULL), r.value("pages_sent", 0ULL), r.value("pages_skipped", 0ULL),
      r.value("pages_zero", 0ULL), mib, ram_mib > 0 ? 100.0 * mib / ram_mib : 0.0, ram_mib, r.value("seconds", 0.0),
      r.value("downtime_ms", 0.0), r.value("rounds", 0ULL), r.value("epoch", 0ULL), r.value("lineage", ""));
  if (!r.value("fallback", std::string()).empty()) fmt::print("note: {}\n", r.value("fallback", ""));
  fmt::print("ram: {}{}{}\n", r.value("ram_mode", "stream"),
             r.value("ram_mode_reason", "").empty() ? "" : ", reason: ", r.value("ram_mode_reason", ""));
  const json shared = r.value("shared", json::object());
  if (!shared.contains("tracker")) return;
  const std::string lost = shared.value("tracker_lost", "");
  fmt::print("tracker: {}{}; {} rounds, stopped by {}\n", shared.value("tracker", ""),
             lost.empty() ? "" : " (" + lost + ")", shared.value("rounds", 0ULL), shared.value("stopped_by", ""));
}

CLI::App* with_common(CLI::App* c, const std::shared_ptr<VmArgs>& a, bool takes_name) {
  c->add_option("--control", a->control, "daemon control socket (env BNF_CONTROL)")->capture_default_str();
  c->add_flag("--json", a->json, "JSON output");
  if (takes_name) c->add_option("name", a->name, "VM name")->required();
  return c;
}

void add_migrate_command(CLI::App& app, int& rc);

}  // namespace

void add_vm_commands(CLI::App& app, int& rc) {
  CLI::App* vm = app.add_subcommand("vm", "VMs run by the local daemon");
  vm->require_subcommand(1);

  auto ca = std::make_shared<VmArgs>();
  CLI::App* create = with_common(vm->add_subcommand("create", "define a VM (RAM in the daemon's state dir)"), ca, true);
  create->add_option("--memory", ca->memory, "guest RAM, e.g. 1G")->capture_default_str();
  create->add_option("--accel", ca->accel, "tcg or kvm")->capture_default_str();
  create->add_option("extra", ca->extra, "extra QEMU arguments, after --");
  create->callback([ca, &rc] {
    auto mem = parse_size(ca->memory);
    if (!mem.is_ok()) {
      rc = fail(mem.status().message());
      return;
    }
    qemu::VmDefinition d{ca->name, *mem, ca->accel, ca->extra};
    rc = call(*ca, {{"op", "vm.create"}, {"definition", d.to_json()}}, print_vm);
  });

  for (const char* op : {"start", "stop", "status"}) {
    auto a = std::make_shared<VmArgs>();
    CLI::App* c = with_common(vm->add_subcommand(op, std::string(op) + " a VM"), a, true);
    c->callback([a, &rc, op = std::string(op)] { rc = call(*a, {{"op", "vm." + op}, {"name", a->name}}, print_vm); });
  }
  auto la = std::make_shared<VmArgs>();
  CLI::App* list = with_common(vm->add_subcommand("list", "list VMs"), la, false);
  list->callback([la, &rc] {
    rc = call(*la, {{"op", "vm.list"}}, [](const json& arr) {
      for (const json& v : arr) print_vm(v);
    });
  });

  auto ra = std::make_shared<VmArgs>();
  CLI::App* restore = with_common(
      app.add_subcommand("restore", "restart a VM here from its retained snapshot (the other host died)"), ra, true);
  restore->callback([ra, &rc] { rc = call(*ra, {{"op", "restore"}, {"name", ra->name}}, print_vm); });
  add_migrate_command(app, rc);
}

namespace {

void add_migrate_command(CLI::App& app, int& rc) {
  auto ma = std::make_shared<VmArgs>();
  CLI::App* mig =
      with_common(app.add_subcommand("migrate", "live-migrate a running VM to another bnf daemon"), ma, true);
  mig->add_option("to", ma->to, "destination daemon, bnf+tcp:HOST:PORT")->required();
  mig->add_option("--max-downtime", ma->max_downtime_ms, "QEMU's downtime limit, milliseconds")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  mig->add_option("--switchover-check", ma->switchover_check,
                  "re-hash the stopped VM's RAM and resend what QEMU missed, every page compared before the VM "
                  "resumes there: auto (TCG VMs), on (full: the same), off; written: on, but a direct trip "
                  "compares the pages nothing wrote during it and it did not hash ahead just after the VM "
                  "resumed (a difference found then is already in the running guest)")
      ->check(CLI::IsMember(choice_names(qemu::kSwitchoverChecks)))
      ->capture_default_str();
  mig->add_option("--write-tracker", ma->write_tracker,
                  "let the switchover check re-hash only the pages QEMU wrote during the trip (userfaultfd "
                  "write-protect on QEMU's RAM mapping, set up through ptrace, where the kernel and permissions "
                  "allow): auto (full trips over TCP), on (relayed trips too), off")
      ->check(CLI::IsMember(choice_names(qemu::kWriteTrackers)))
      ->capture_default_str();
  mig->add_option("--mode", ma->mode,
                  "who moves guest RAM: stream (QEMU's migration stream, filtered by bnf); shared (bnf copies the "
                  "VM's RAM file itself in rounds of the pages the guest wrote, QEMU sends only device state; "
                  "Linux 6.7+); auto (shared where this host, the VM and the destination allow it, else stream, "
                  "and the report says why)")
      ->check(CLI::IsMember(choice_names(qemu::kRamModes)))
      ->capture_default_str();
  mig->add_option("--max-rounds", ma->max_rounds,
                  "shared mode: rounds of written pages after the first, at most, before the VM is stopped")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  mig->add_flag("--relay", ma->relay,
                "full trips too go through this daemon (by default QEMU streams a full trip to the destination "
                "daemon itself)");
  mig->callback([ma, &rc] {
    rc = call(*ma,
              {{"op", "migrate"},
               {"name", ma->name},
               {"to", ma->to},
               {"downtime_limit_ms", ma->max_downtime_ms},
               {"switchover_check", ma->switchover_check},
               {"write_tracker", ma->write_tracker},
               {"mode", ma->mode},
               {"max_rounds", ma->max_rounds},
               {"relay", ma->relay}},
              print_migration, true);
  });
}

}  // namespace

}  // namespace bnf::cli
