#include "vm/registry/warm_ram.hpp"

#include <fcntl.h>

#include <chrono>

#include "common/files.hpp"

namespace bnf::qemu {

Result<std::unique_ptr<WarmRam>> WarmRam::open(const std::string& ram_file, uint64_t bytes) {
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(ram_file, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(Mapping map, map_file(fd.get(), bytes, false));
  return std::unique_ptr<WarmRam>(new WarmRam(std::move(fd), std::move(map)));
}

WarmRam::WarmRam(UniqueFd fd, Mapping map) : fd_(std::move(fd)), map_(std::move(map)) { resume_walks(); }

void WarmRam::pause_walks() {
  if (!prefault_) return;
  prefault_->stop();
  walked_ += prefault_->done();
  prefault_.reset();
}

void WarmRam::resume_walks() {
  if (prefault_) return;
  prefault_ = std::make_unique<Prefault>(
      map_.bytes(), PrefaultOptions{.when_idle = true, .file = fd_.get(), .again_after = std::chrono::seconds(1)});
}

}  // namespace bnf::qemu
