// A VM's directory in the daemon's state directory (`vms/NAME`), and the
// files its QEMU and its trips keep there.
#pragma once

#include <string>

#include "launch/vm_definition.hpp"

namespace bnf::qemu {

struct VmDir {
  std::string path;

  [[nodiscard]] LaunchPaths launch(const std::string& ram_file) const {
    return {ram_file, path + "/qmp.sock", path + "/serial.log"};
  }
  [[nodiscard]] std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace bnf::qemu
