// Which extra QEMU arguments a bnf VM may carry. The daemon starts QEMU as
// root with them, for whoever may use its control socket and for every peer
// that migrates a VM here, and a blocklist misses spellings (a helper= in a
// -netdev, a -chardev pipe, --plugin): so only what VMs need passes (disks,
// kernel, devices, networks and consoles that run no program and write
// nowhere but the VM's folder), and the operator may allow an option as a
// whole (`bnf daemon --allow-qemu-arg OPT`). Values are read as QEMU reads
// them: key=value lists with ",," a comma inside a value, a first bare
// element the implied key (the netdev type), "--opt" and "-opt=value" the
// same as "-opt".
#pragma once

#include <set>
#include <string>
#include <vector>

#include "common/status.hpp"

namespace bnf::qemu {

class QemuArgPolicy {
 public:
  QemuArgPolicy() = default;
  // Also allows `options` ("-icount", "--icount" or "icount") with any value;
  // refused: an option QEMU 7.2 does not have, or one bnf sets itself.
  static Result<QemuArgPolicy> allowing(const std::vector<std::string>& options);

  // Ok, or why the first refused argument is refused. Consoles and logs may
  // write only under `vm_dir` (the VM's folder in the state directory).
  [[nodiscard]] Status check(const std::vector<std::string>& args, const std::string& vm_dir) const;
  [[nodiscard]] const std::set<std::string>& allowed_as_whole() const { return allowed_; }

 private:
  std::set<std::string> allowed_;  // normalised: "-icount"
};

}  // namespace bnf::qemu
