#include "snapshot/base_proof.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "bitmap/file_holes.hpp"
#include "common/files.hpp"

namespace bnf {

namespace {

// Everything that can change the file's bytes or let a process do so later:
// an open (a writable mapping needs one), a write, a truncate or hole punch
// (IN_MODIFY), a chmod, a rename or removal.
constexpr uint32_t kWatched = IN_OPEN | IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;

bool same_snapshot(const Manifest& a, const Manifest& b) {
  return a.name == b.name && a.lineage == b.lineage && a.epoch == b.epoch && a.root == b.root &&
         a.size_bytes == b.size_bytes;
}

}  // namespace

Result<std::unique_ptr<BaseProof>> BaseProof::start(const std::string& image, const Manifest& m, DigestTable table) {
  if (table.size() != m.pages()) return Status(Errc::invalid_argument, "digest table does not fit the image");
  UniqueFd watch(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!watch.valid()) return errno_status("inotify_init1", errno);
  if (::inotify_add_watch(watch.get(), image.c_str(), kWatched) < 0) return errno_status("watch " + image, errno);
  return std::unique_ptr<BaseProof>(new BaseProof(image, m, std::move(table), std::move(watch)));
}

BaseProof::BaseProof(std::string image, const Manifest& m, DigestTable table, UniqueFd watch)
    : image_(std::move(image)), proven_(m), table_(std::move(table)), watch_(std::move(watch)), thread_([this] {
        run();
      }) {}

BaseProof::~BaseProof() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void BaseProof::run() noexcept {
  // The host's other work first: the VM is away, nothing waits for this.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  Status st = prove();
  if (!st.is_ok()) failed_ = st.message();
  finished_ = true;
}

Status BaseProof::prove() {
  const uint32_t page_size = proven_.page_size;
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(image_, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(PageBitmap holes, file_holes(fd.get(), table_.size()));
  BNF_ASSIGN_OR_RETURN(Mapping map, map_file(fd.get(), proven_.size_bytes, false));
  fd.reset();
  const PageDigester h(proven_.key);
  const Digest zero = h.zero_digest();
  for (uint64_t p = 0; p < table_.size(); ++p) {
    if (stop_) return Status(Errc::cancelled, "stopped");
    // A hole reads as zeros; on tmpfs a read through the mapping would allocate it.
    const Digest now = holes.test(p) ? zero : h.page(map.data() + p * page_size, page_size);
    if (!(now == table_[p])) ++mismatched_;
  }
  return Status::ok();
}

void BaseProof::read_events() {
  alignas(inotify_event) std::array<char, 4096> buf{};
  while (true) {
    const ssize_t n = ::read(watch_.get(), buf.data(), buf.size());
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && doubt_.empty()) doubt_ = "its watch failed";
      return;
    }
    for (ssize_t off = 0; off < n;) {
      const auto* e = reinterpret_cast<const inotify_event*>(buf.data() + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
      if (!doubt_.empty()) continue;
      if (e->mask == IN_OPEN && own_opens_ == 0) {
        ++own_opens_;
        continue;
      }
      if ((e->mask & IN_OPEN) != 0)
        doubt_ = "the image was opened after the proof began";
      else if ((e->mask & IN_MODIFY) != 0)
        doubt_ = "the image was written after the proof began";
      else if ((e->mask & IN_ATTRIB) != 0)
        doubt_ = "the image's attributes changed after the proof began";
      else
        doubt_ = "the image was moved, removed or its watch lost";
    }
  }
}

bool BaseProof::holds(const Manifest& m) {
  if (!finished_) return false;
  read_events();
  if (doubt_.empty() && !failed_.empty()) doubt_ = "the proof failed: " + failed_;
  if (doubt_.empty() && mismatched_ != 0)
    doubt_ = std::to_string(mismatched_.load()) + " pages differ from the digest table";
  if (doubt_.empty() && !same_snapshot(m, proven_)) doubt_ = "the snapshot is not the proven epoch";
  return doubt_.empty();
}

std::string BaseProof::doubt() const {
  if (!finished_) return "the proof is still running";
  return doubt_;
}

}  // namespace bnf
