#include "launch/qemu_args.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>

namespace bnf::qemu {

namespace {

namespace fs = std::filesystem;
using std::string_view;

// QEMU 7.2's options (qemu-options.def) that take no value; every other
// option QEMU knows takes one (kValueOptions).
// clang-format off
constexpr string_view kFlagOptions[] = {
    "-h", "-help", "-version", "-snapshot", "-mem-prealloc", "-nographic", "-portrait", "-full-screen",
    "-win2k-hack", "-no-fd-bootchk", "-no-acpi", "-no-hpet", "-usb", "-S", "-s", "-singlestep", "-preconfig",
    "-enable-kvm", "-no-reboot", "-no-shutdown", "-daemonize", "-xen-attach", "-xen-domid-restrict",
    "-only-migratable", "-nodefaults", "-no-user-config", "-nouserconfig", "-async-teardown",
    "-enable-sync-profile", "-audio-help", "-semihosting"};
// clang-format on
// clang-format off
constexpr string_view kValueOptions[] = {
    "-machine", "-M", "-cpu", "-accel", "-smp", "-numa", "-add-fd", "-set", "-global", "-boot", "-m", "-mem-path",
    "-k", "-audio", "-audiodev", "-device", "-name", "-uuid", "-fda", "-fdb", "-hda", "-hdb", "-hdc", "-hdd",
    "-cdrom", "-blockdev", "-drive", "-mtdblock", "-sd", "-fsdev", "-virtfs", "-iscsi", "-usbdevice", "-display",
    "-vga", "-spice", "-rotate", "-vnc", "-acpitable", "-smbios", "-netdev", "-nic", "-net", "-chardev", "-tpmdev",
    "-bios", "-pflash", "-kernel", "-append", "-initrd", "-dtb", "-compat", "-fw_cfg", "-serial", "-parallel",
    "-monitor", "-qmp", "-qmp-pretty", "-mon", "-debugcon", "-pidfile", "-gdb", "-d", "-D", "-dfilter", "-seed",
    "-L", "-xen-domid", "-action", "-loadvm", "-option-rom", "-rtc", "-icount", "-watchdog-action", "-echr",
    "-incoming", "-chroot", "-runas", "-sandbox", "-readconfig", "-trace", "-plugin", "-msg", "-dump-vmstate",
    "-object", "-semihosting-config"};
// clang-format on
// Set by bnf itself (qemu_command), or they would undo its conventions: RAM
// in the snapshot's file, QMP, migration, a child it can watch.
// clang-format off
constexpr string_view kOwnedOptions[] = {
    "-name", "-accel", "-enable-kvm", "-m", "-machine", "-M", "-mem-path", "-mem-prealloc", "-qmp", "-qmp-pretty",
    "-monitor", "-mon", "-incoming", "-daemonize", "-preconfig"};
// clang-format on

bool listed(std::span<const string_view> list, string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// "--opt" and "-opt=value" are "-opt" to QEMU.
std::string option_name(string_view arg) {
  if (arg.starts_with("--")) arg.remove_prefix(1);
  return std::string(arg.substr(0, arg.find('=')));
}

struct Arg {
  std::string option;  // normalised: "-netdev"
  std::string value;   // what follows it; "" for a flag
};

// The option at args[i] and its value; `i` moves past both.
Result<Arg> next_arg(const std::vector<std::string>& args, size_t& i) {
  const std::string& raw = args[i];
  if (raw.size() < 2 || raw[0] != '-')
    return Status(
        Errc::invalid_argument,
        fmt::format("QEMU argument '{}' is not an option (QEMU would open it as a disk); use -drive file=", raw));
  Arg a{option_name(raw), {}};
  if (listed(kOwnedOptions, a.option))
    return Status(Errc::invalid_argument, fmt::format("extra QEMU argument '{}' is set by bnf itself", a.option));
  const bool flag = listed(kFlagOptions, a.option);
  if (!flag && !listed(kValueOptions, a.option))
    return Status(Errc::invalid_argument, fmt::format("QEMU argument {} is not a QEMU 7.2 option", a.option));
  const size_t eq = raw.find('=');
  if (eq != std::string::npos) {
    if (flag) return Status(Errc::invalid_argument, fmt::format("QEMU argument {} takes no value", a.option));
    a.value = raw.substr(eq + 1);
  } else if (!flag) {
    if (i + 1 >= args.size())
      return Status(Errc::invalid_argument, fmt::format("QEMU argument {} needs a value", a.option));
    a.value = args[++i];
  }
  return a;
}

struct Prop {
  std::string key;
  std::string value;
};

// One value of a key=value list, up to a lone ',' (",," is a comma in it).
string_view::size_type read_value(string_view text, string_view::size_type at, std::string& out) {
  for (; at < text.size(); ++at) {
    if (text[at] == ',') {
      if (at + 1 >= text.size() || text[at + 1] != ',') return at + 1;
      ++at;  // ",,"
    }
    out.push_back(text[at]);
  }
  return at;
}

// A key=value list as QEMU's option parser reads it: a first element without
// '=' is the value of `implied` (the netdev type, the device driver), a later
// one a flag ("x" is x=on, "nox" x=off).
std::vector<Prop> parse_props(string_view text, string_view implied) {
  std::vector<Prop> props;
  for (string_view::size_type at = 0; at < text.size();) {
    const auto end = text.find_first_of("=,", at);
    const bool bare = end == string_view::npos || text[end] == ',';
    Prop p;
    if (bare && props.empty() && !implied.empty()) {
      p.key = implied;
      at = read_value(text, at, p.value);
    } else if (bare) {
      const string_view name = text.substr(at, end - at);
      p.key = name.starts_with("no") ? name.substr(2) : name;
      p.value = name.starts_with("no") ? "off" : "on";
      at = end == string_view::npos ? text.size() : end + 1;
    } else {
      p.key = text.substr(at, end - at);
      at = read_value(text, end + 1, p.value);
    }
    props.push_back(std::move(p));
  }
  return props;
}

const Prop* find_prop(const std::vector<Prop>& props, string_view key) {
  auto it = std::find_if(props.begin(), props.end(), [&](const Prop& p) { return p.key == key; });
  return it == props.end() ? nullptr : &*it;
}

struct Context {
  const Arg& arg;
  const std::string& vm_dir;
};

Status refuse(const Context& c, string_view why) {
  return {
      Errc::invalid_argument,
      fmt::format("QEMU argument {} {} is not allowed for bnf VMs: {} (allow {} as a whole with --allow-qemu-arg {})",
                  c.arg.option, c.arg.value, why, c.arg.option, c.arg.option)};
}

// Why a key is refused, where it says more than "not allowed".
string_view key_reason(string_view key) {
  if (key == "helper" || key == "script" || key == "downscript") return "runs a program as root";
  if (key == "guestfwd") return "can run a program as root";
  if (key == "smb") return "runs smbd as root";
  if (key == "fd" || key == "fds" || key == "vhostfd" || key == "vhostfds") return "hands QEMU a descriptor";
  return "is not one bnf allows here";
}

// --- values

// An absolute path: QEMU's block layer reads no protocol prefix (nbd:, json:, ...) before a '/'.
Status plain_path(const Context& c, const Prop& p) {
  if (p.value.starts_with('/')) return Status::ok();
  return refuse(c, fmt::format("{}={} is not an absolute path (a protocol prefix such as nbd: or json: would be read)",
                               p.key, p.value));
}

bool inside(const std::string& path, const std::string& dir) {
  const fs::path rel = fs::absolute(path).lexically_normal().lexically_relative(fs::absolute(dir).lexically_normal());
  return !rel.empty() && *rel.begin() != ".." && rel != ".";
}

// Consoles and logs write only in the VM's own folder.
Status in_vm_dir(const Context& c, const Prop& p) {
  if (inside(p.value, c.vm_dir)) return Status::ok();
  return refuse(c, fmt::format("{}={} is outside the VM's folder {}", p.key, p.value, c.vm_dir));
}

Status no_script(const Context& c, const Prop& p) {
  if (p.value.empty() || p.value == "no") return Status::ok();
  return refuse(c, fmt::format("{}= {} (only {}=no)", p.key, key_reason(p.key), p.key));
}

Status image_format(const Context& c, const Prop& p) {
  if (p.value == "raw" || p.value == "qcow2") return Status::ok();
  return refuse(c, fmt::format("format={} (raw and qcow2 are)", p.value));
}

Status block_driver(const Context& c, const Prop& p) {
  if (p.value == "file" || p.value == "host_device" || p.value == "raw" || p.value == "qcow2") return Status::ok();
  return refuse(c, fmt::format("driver={} (file, host_device, raw and qcow2 are)", p.value));
}

Status random_source(const Context& c, const Prop& p) {
  if (p.value == "/dev/urandom" || p.value == "/dev/random") return Status::ok();
  return refuse(c, fmt::format("filename={} (/dev/urandom and /dev/random are)", p.value));
}

// --- key=value lists

struct KeyRule {
  string_view key;
  Status (*check)(const Context&, const Prop&) = nullptr;
  bool repeatable = false;
};

const KeyRule* find_rule(std::span<const KeyRule> rules, string_view key) {
  auto it = std::find_if(rules.begin(), rules.end(), [&](const KeyRule& r) { return r.key == key; });
  return it == rules.end() ? nullptr : &*it;
}

// Every key is in `common` or `specific`, once unless repeatable (QEMU takes
// the last of two: a second type= would change what the others mean).
Status check_props(const Context& c, const std::vector<Prop>& props, std::span<const KeyRule> common,
                   std::span<const KeyRule> specific = {}) {
  std::set<string_view> seen;
  for (const Prop& p : props) {
    const KeyRule* rule = find_rule(common, p.key);
    if (rule == nullptr) rule = find_rule(specific, p.key);
    if (rule == nullptr) return refuse(c, fmt::format("{}= {}", p.key, key_reason(p.key)));
    if (!rule->repeatable && !seen.insert(rule->key).second) return refuse(c, fmt::format("{}= is given twice", p.key));
    if (rule->check != nullptr) BNF_TRY(rule->check(c, p));
  }
  return Status::ok();
}

struct TypeRules {
  string_view type;
  std::span<const KeyRule> keys;
};

// A list whose `type_key` (the netdev type, the chardev backend) picks the keys it may have.
Status check_typed(const Context& c, const std::vector<Prop>& props, string_view type_key,
                   std::span<const TypeRules> types, std::span<const KeyRule> common) {
  const Prop* type = find_prop(props, type_key);
  if (type == nullptr) return refuse(c, fmt::format("it names no {}", type_key));
  auto it = std::find_if(types.begin(), types.end(), [&](const TypeRules& t) { return t.type == type->value; });
  if (it == types.end()) return refuse(c, fmt::format("{} {} is not one bnf allows", type_key, type->value));
  return check_props(c, props, common, it->keys);
}

// A JSON form ("{...}") is not read here: only key=value lists are.
Result<std::vector<Prop>> props_of(const Context& c, string_view implied) {
  if (c.arg.value.starts_with('{')) return refuse(c, "its JSON form is not (use key=value)");
  return parse_props(c.arg.value, implied);
}

// --- networks

constexpr KeyRule kNetdevCommon[] = {{"type"}, {"id"}};
// clang-format off
constexpr KeyRule kUserNet[] = {
    {"net"}, {"host"}, {"restrict"}, {"hostname"}, {"dhcpstart"}, {"dns"}, {"dnssearch", nullptr, true},
    {"domainname"}, {"hostfwd", nullptr, true}, {"ipv4"}, {"ipv6"}, {"ipv6-net"}, {"ipv6-host"}, {"ipv6-dns"},
    {"ipv6-prefix"}, {"ipv6-prefixlen"}};
// clang-format on
// clang-format off
constexpr KeyRule kTapNet[] = {
    {"ifname"}, {"script", no_script}, {"downscript", no_script}, {"vhost"}, {"vhostforce"}, {"queues"},
    {"sndbuf"}, {"vnet_hdr"}, {"poll-us"}};
// clang-format on
constexpr KeyRule kBridgeNet[] = {{"br"}};
constexpr KeyRule kSocketNet[] = {{"listen"}, {"connect"}, {"mcast"}, {"localaddr"}, {"udp"}};
constexpr KeyRule kHubportNet[] = {{"hubid"}, {"netdev"}};
// clang-format off
constexpr TypeRules kNetTypes[] = {
    {"user", kUserNet}, {"tap", kTapNet}, {"bridge", kBridgeNet}, {"socket", kSocketNet}, {"hubport", kHubportNet}};
// clang-format on
// -nic: a netdev and its guest NIC in one; "none": no NIC at all.
constexpr KeyRule kNicKeys[] = {{"model"}, {"mac"}};
constexpr KeyRule kNoKeys[] = {{"type"}};
// clang-format off
constexpr KeyRule kLegacyNic[] = {
    {"type"}, {"id"}, {"model"}, {"macaddr"}, {"netdev"}, {"name"}, {"addr"}, {"vectors"}};
// clang-format on

Status check_netdev(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "type"));
  return check_typed(c, props, "type", kNetTypes, kNetdevCommon);
}

Status check_nic(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "type"));
  const Prop* type = find_prop(props, "type");
  if (type != nullptr && type->value == "none") return check_props(c, props, kNoKeys);
  std::vector<Prop> netdev_props;  // what -nic passes on to its netdev
  for (const Prop& p : props)
    if (find_rule(kNicKeys, p.key) == nullptr) netdev_props.push_back(p);
  return check_typed(c, netdev_props, "type", kNetTypes, kNetdevCommon);
}

// -net: "nic" (the guest's card), "none", or a netdev type.
Status check_net(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "type"));
  const Prop* type = find_prop(props, "type");
  if (type != nullptr && type->value == "nic") return check_props(c, props, kLegacyNic);
  if (type != nullptr && type->value == "none") return check_props(c, props, kNoKeys);
  return check_typed(c, props, "type", kNetTypes, kNetdevCommon);
}

// --- consoles

constexpr KeyRule kChardevCommon[] = {{"backend"}, {"id"}, {"mux"}, {"logfile", in_vm_dir}, {"logappend"}};
constexpr KeyRule kFileChardev[] = {{"path", in_vm_dir}, {"append"}};
constexpr KeyRule kSocketChardev[] = {{"path", in_vm_dir}, {"server"}, {"wait"}, {"reconnect"}};
constexpr KeyRule kStdioChardev[] = {{"signal"}};
constexpr KeyRule kRingbufChardev[] = {{"size"}};
// clang-format off
constexpr TypeRules kChardevTypes[] = {
    {"null", {}}, {"pty", {}}, {"file", kFileChardev}, {"socket", kSocketChardev}, {"stdio", kStdioChardev},
    {"ringbuf", kRingbufChardev}, {"memory", kRingbufChardev}};
// clang-format on

Status check_chardev(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "backend"));
  if (const Prop* socket = find_prop(props, "backend");
      socket && socket->value == "socket" && !find_prop(props, "path"))
    return refuse(c, "a socket console is a UNIX socket in the VM's folder (path=)");
  return check_typed(c, props, "backend", kChardevTypes, kChardevCommon);
}

// -serial's own syntax: "file:PATH", "unix:PATH,server=on...", "chardev:ID", or a name.
Status check_serial(const Context& c) {
  const std::string& v = c.arg.value;
  if (v == "none" || v == "null" || v == "stdio" || v == "pty" || v.starts_with("chardev:")) return Status::ok();
  if (v.starts_with("file:")) return in_vm_dir(c, {"file", v.substr(5)});
  if (v.starts_with("unix:")) {
    const std::vector<Prop> props = parse_props(string_view(v).substr(5), "path");
    if (find_prop(props, "path") == nullptr) return refuse(c, "it names no path");
    return check_props(c, props, kSocketChardev);
  }
  return refuse(c, "consoles go to none, null, stdio, pty, chardev:ID, or file: and unix: in the VM's folder");
}

// --- disks

// clang-format off
constexpr KeyRule kDriveKeys[] = {
    {"file", plain_path}, {"if"}, {"bus"}, {"unit"}, {"index"}, {"media"}, {"format", image_format}, {"id"},
    {"node-name"}, {"cache"}, {"cache.direct"}, {"cache.no-flush"}, {"aio"}, {"readonly"}, {"read-only"},
    {"auto-read-only"}, {"snapshot"}, {"discard"}, {"detect-zeroes"}, {"werror"}, {"rerror"}, {"serial"},
    {"copy-on-read"}};
// clang-format on
// clang-format off
constexpr KeyRule kBlockdevKeys[] = {
    {"driver", block_driver}, {"node-name"}, {"filename", plain_path}, {"file"}, {"read-only"}, {"auto-read-only"},
    {"discard"}, {"detect-zeroes"}, {"cache.direct"}, {"cache.no-flush"}, {"aio"}, {"locking"}, {"force-share"}};
// clang-format on

Status check_drive(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, ""));
  return check_props(c, props, kDriveKeys);
}

Status check_blockdev(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, ""));
  return check_props(c, props, kBlockdevKeys);
}

// -cdrom FILE, -hda FILE: a drive's file= in short.
Status check_disk_file(const Context& c) { return plain_path(c, {"file", c.arg.value}); }

// --- devices

// Devices that hand the guest a host device, host memory or a host file.
// clang-format off
constexpr string_view kHostReachingDevices[] = {
    "vfio", "usb-host", "u2f-passthru", "vhost-user", "vhost-scsi", "vhost-vdpa", "loader", "guest-loader", "ivshmem"};
// clang-format on

Status romfile_empty(const Context& c, const Prop& p) {
  if (p.key != "romfile" || p.value.empty()) return Status::ok();
  return refuse(c, "romfile= reads a host file into the guest (romfile= empty is allowed)");
}

Status check_device(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "driver"));
  std::set<string_view> seen;
  for (const Prop& p : props) {
    if (!seen.insert(p.key).second) return refuse(c, fmt::format("{}= is given twice", p.key));
    BNF_TRY(romfile_empty(c, p));
  }
  const Prop* driver = find_prop(props, "driver");
  if (driver == nullptr) return refuse(c, "it names no driver");
  for (string_view host : kHostReachingDevices)
    if (driver->value.starts_with(host))
      return refuse(c, fmt::format("device {} reaches into the host", driver->value));
  return Status::ok();
}

// "-global driver.prop=value" or "-global driver=D,property=P,value=V".
Status check_global(const Context& c) {
  const std::string& v = c.arg.value;
  if (v.starts_with("driver=")) {
    const std::vector<Prop> props = parse_props(v, "");
    const Prop* property = find_prop(props, "property");
    const Prop* value = find_prop(props, "value");
    return romfile_empty(c, {property ? property->value : "", value ? value->value : ""});
  }
  const size_t eq = v.find('=');
  const std::string lhs = v.substr(0, eq);
  const std::string property = lhs.substr(lhs.rfind('.') + 1);
  return romfile_empty(c, {property, eq == std::string::npos ? "" : v.substr(eq + 1)});
}

constexpr KeyRule kObjectCommon[] = {{"qom-type"}, {"id"}};
// clang-format off
constexpr KeyRule kIothreadKeys[] = {
    {"poll-max-ns"}, {"poll-grow"}, {"poll-shrink"}, {"aio-max-batch"}, {"thread-pool-min"}, {"thread-pool-max"}};
// clang-format on
constexpr KeyRule kRngRandomKeys[] = {{"filename", random_source}};
constexpr TypeRules kObjectTypes[] = {{"iothread", kIothreadKeys}, {"rng-builtin", {}}, {"rng-random", kRngRandomKeys}};

Status check_object(const Context& c) {
  BNF_ASSIGN_OR_RETURN(std::vector<Prop> props, props_of(c, "qom-type"));
  if (const Prop* type = find_prop(props, "qom-type"); type && type->value.starts_with("memory-backend"))
    return {Errc::invalid_argument, "extra QEMU arguments must not define memory backends: bnf owns guest RAM"};
  return check_typed(c, props, "qom-type", kObjectTypes, kObjectCommon);
}

// --- the rest

constexpr KeyRule kBootKeys[] = {{"order"}, {"once"}, {"menu"}, {"splash-time"}, {"reboot-timeout"}, {"strict"}};
constexpr KeyRule kFwCfgKeys[] = {{"name"}, {"string"}};
constexpr KeyRule kTraceKeys[] = {{"enable"}};

Status check_boot(const Context& c) { return check_props(c, parse_props(c.arg.value, "order"), kBootKeys); }
Status check_fw_cfg(const Context& c) { return check_props(c, parse_props(c.arg.value, "name"), kFwCfgKeys); }
Status check_trace(const Context& c) { return check_props(c, parse_props(c.arg.value, "enable"), kTraceKeys); }

Status check_display(const Context& c) {
  return c.arg.value == "none" ? Status::ok() : refuse(c, "bnf VMs have no display (-display none is allowed)");
}

Status any_value(const Context&) { return Status::ok(); }

struct OptionRule {
  string_view option;
  Status (*check)(const Context&);
};

// clang-format off
constexpr OptionRule kAllowed[] = {
    {"-kernel", any_value}, {"-initrd", any_value}, {"-append", any_value}, {"-bios", any_value},
    {"-cpu", any_value}, {"-smp", any_value}, {"-uuid", any_value}, {"-k", any_value}, {"-vga", any_value},
    {"-rtc", any_value}, {"-action", any_value}, {"-watchdog-action", any_value}, {"-msg", any_value},
    {"-nographic", any_value}, {"-no-reboot", any_value}, {"-no-shutdown", any_value}, {"-nodefaults", any_value},
    {"-no-user-config", any_value}, {"-no-hpet", any_value}, {"-no-acpi", any_value}, {"-snapshot", any_value},
    {"-usb", any_value}, {"-display", check_display},
    {"-drive", check_drive}, {"-blockdev", check_blockdev}, {"-cdrom", check_disk_file}, {"-hda", check_disk_file},
    {"-hdb", check_disk_file}, {"-hdc", check_disk_file}, {"-hdd", check_disk_file},
    {"-device", check_device}, {"-global", check_global}, {"-object", check_object},
    {"-netdev", check_netdev}, {"-nic", check_nic}, {"-net", check_net},
    {"-chardev", check_chardev}, {"-serial", check_serial},
    {"-boot", check_boot}, {"-fw_cfg", check_fw_cfg}, {"-trace", check_trace}};
// clang-format on

Status check_option(const Arg& a, const std::string& vm_dir) {
  auto it =
      std::find_if(std::begin(kAllowed), std::end(kAllowed), [&](const OptionRule& r) { return r.option == a.option; });
  if (it == std::end(kAllowed))
    return {Errc::invalid_argument,
            fmt::format("QEMU argument {} is not allowed for bnf VMs (allow it with --allow-qemu-arg {})", a.option,
                        a.option)};
  return it->check(Context{a, vm_dir});
}

}  // namespace

Result<QemuArgPolicy> QemuArgPolicy::allowing(const std::vector<std::string>& options) {
  QemuArgPolicy p;
  for (const std::string& o : options) {
    const std::string name = option_name(o.starts_with('-') ? o : "-" + o);
    if (listed(kOwnedOptions, name))
      return Status(Errc::invalid_argument, fmt::format("--allow-qemu-arg {}: bnf sets {} itself", o, name));
    if (!listed(kFlagOptions, name) && !listed(kValueOptions, name))
      return Status(Errc::invalid_argument, fmt::format("--allow-qemu-arg {}: QEMU 7.2 has no option {}", o, name));
    p.allowed_.insert(name);
  }
  return p;
}

Status QemuArgPolicy::check(const std::vector<std::string>& args, const std::string& vm_dir) const {
  for (size_t i = 0; i < args.size(); ++i) {
    BNF_ASSIGN_OR_RETURN(Arg a, next_arg(args, i));
    if (allowed_.count(a.option) == 0) BNF_TRY(check_option(a, vm_dir));
  }
  return Status::ok();
}

}  // namespace bnf::qemu
