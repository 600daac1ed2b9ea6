#include "snapshot/snapshot_store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <thread>

#include "bitmap/file_holes.hpp"
#include "common/files.hpp"
#include "common/page.hpp"
#include "digest/hole_digests.hpp"
#include "snapshot/space_check.hpp"
#include "snapshot/zero_pages.hpp"

namespace bnf {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";

std::string journal_path(const std::string& dir, unsigned stream) { return dir + "/journal." + std::to_string(stream); }

std::vector<std::string> journals_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with("journal.")) out.push_back(e.path().string());
  return out;
}
}  // namespace

SnapshotStore::SnapshotStore(std::string state_dir) : root_(std::move(state_dir) + "/snapshots") {}

std::string SnapshotStore::dir_of(const std::string& name) const { return root_ + "/" + name; }
std::string SnapshotStore::image_path(const Manifest& m) const { return dir_of(m.name) + "/image." + m.lineage; }

Status SnapshotStore::validate_name(std::string_view name) {
  const bool ok_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
  if (name.empty() || name.size() > 128 || !ok_chars || name.front() == '.')
    return {Errc::invalid_argument, "bad snapshot name '" + std::string(name) +
                                        "': use 1-128 letters, digits, '.', '_' or '-', not starting with '.'"};
  return Status::ok();
}

Status SnapshotStore::open() {
  BNF_TRY(make_dirs(root_));
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory()) continue;
    const std::string name = e.path().filename().string();
    auto r = recover(name);
    if (!r.is_ok() && r.status().code() != Errc::busy) return r.status().context("recover " + name);
  }
  return Status::ok();
}

Result<UniqueFd> SnapshotStore::lock(const std::string& name) const {
  BNF_TRY(validate_name(name));
  BNF_TRY(make_dirs(dir_of(name)));
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(dir_of(name) + "/lock", O_RDWR | O_CREAT));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return Status(Errc::busy, "snapshot '" + name + "' is busy: another transfer is writing it");
    return errno_status("lock snapshot " + name, errno);
  }
  return fd;
}

Result<Manifest> SnapshotStore::manifest(const std::string& name) const {
  BNF_TRY(validate_name(name));
  const std::string path = dir_of(name) + "/" + kManifest;
  if (!path_exists(path)) return Status(Errc::not_found, "no snapshot named '" + name + "'");
  BNF_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto m = Manifest::from_json(text);
  if (!m.is_ok()) return m.status().context("snapshot " + name);
  return m;
}

Result<std::vector<Manifest>> SnapshotStore::list() const {
  std::vector<Manifest> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    if (!e.is_directory()) continue;
    auto m = manifest(e.path().filename().string());
    if (m.is_ok()) out.push_back(std::move(m).value());
  }
  std::sort(out.begin(), out.end(), [](const Manifest& a, const Manifest& b) { return a.name < b.name; });
  return out;
}

Result<DigestTable> SnapshotStore::load_table(const Manifest& m) const {
  const std::string path = dir_of(m.name) + "/" + m.digests_file;
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDONLY));
  BNF_ASSIGN_OR_RETURN(uint64_t len, file_size(fd.get()));
  DigestTable t(m.pages());
  if (len != t.bytes().size()) return Status(Errc::corrupt, "digest table " + path + ": wrong size");
  BNF_TRY(pread_all(fd.get(), t.writable_bytes().data(), len, 0).context(path));
  if (!(t.root(PageDigester(m.key)) == m.root))
    return Status(Errc::corrupt, "digest table " + path + " does not match the manifest root");
  return t;
}

Result<uint64_t> SnapshotStore::recover(const std::string& name) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  return recover_locked(name);
}

// Rolls back journals whose base epoch is still the committed one, then removes
// every file that the committed manifest does not name.
Result<uint64_t> SnapshotStore::recover_locked(const std::string& name) {
  const std::string dir = dir_of(name);
  auto m = manifest(name);
  if (!m.is_ok() && m.status().code() != Errc::not_found) return m.status();
  uint64_t restored = 0;
  for (const std::string& j : journals_in(dir)) {
    auto epoch = UndoJournal::base_epoch(j);
    if (m.is_ok() && epoch.is_ok() && *epoch == m->epoch) {
      BNF_ASSIGN_OR_RETURN(UniqueFd img, open_file(image_path(*m), O_RDWR));
      BNF_ASSIGN_OR_RETURN(uint64_t n, UndoJournal::roll_back(j, img.get(), m->pages()));
      restored += n;
    }
    fs::remove(j);
  }
  std::error_code ec;
  const auto live_file = live_image(name);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    const bool live = live_file.is_ok() && e.path().string() == *live_file;
    const bool stale_image = f.starts_with("image.") && !live && (!m.is_ok() || e.path().string() != image_path(*m));
    const bool stale_table = f.starts_with("digests.") && (!m.is_ok() || f != m->digests_file);
    if (stale_image || stale_table || f.ends_with(".tmp")) fs::remove(e.path());
  }
  return restored;
}

bool SnapshotStore::is_live(const std::string& name) const { return path_exists(dir_of(name) + "/live"); }

Result<std::string> SnapshotStore::live_image(const std::string& name) const {
  if (!is_live(name)) return Status(Errc::not_found, "snapshot '" + name + "' is not live");
  BNF_ASSIGN_OR_RETURN(std::string f, read_file(dir_of(name) + "/live"));
  return dir_of(name) + "/" + f;
}

Status SnapshotStore::mark_live(const std::string& name, const std::string& image_path) {
  take_proof(name);  // a running VM's RAM is no base
  return write_file_atomic(dir_of(name) + "/live", fs::path(image_path).filename().string());
}

Result<std::string> SnapshotStore::new_live_image(const std::string& name, uint64_t size_bytes) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  if (is_live(name)) return Status(Errc::busy, "snapshot '" + name + "' is in use by a running VM");
  BNF_ASSIGN_OR_RETURN(std::string tag, random_lineage());
  const std::string path = dir_of(name) + "/image.fresh-" + tag.substr(0, 12);
  BNF_ASSIGN_OR_RETURN(UniqueFd fd, open_file(path, O_RDWR | O_CREAT | O_EXCL));
  if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) return errno_status("size " + path, errno);
  BNF_TRY(mark_live(name, path));
  return path;
}

Result<Manifest> SnapshotStore::commit_departure(const std::string& name, const std::string& image,
                                                 const std::string& lineage, uint64_t epoch, const DigestKey& key,
                                                 const DigestTable& table, const std::string& peer,
                                                 std::string_view device_state) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  const std::string dir = dir_of(name);
  const std::string final_image = dir + "/image." + lineage;
  if (image != final_image && ::rename(image.c_str(), final_image.c_str()) != 0)
    return errno_status("rename " + image, errno);
  BNF_ASSIGN_OR_RETURN(UniqueFd img, open_file(final_image, O_RDONLY));
  if (::fsync(img.get()) != 0) return errno_status("sync " + final_image, errno);
  BNF_ASSIGN_OR_RETURN(uint64_t size, file_size(img.get()));
  Manifest m;
  m.name = name;
  m.lineage = lineage;
  m.epoch = epoch;
  m.size_bytes = size;
  m.key = key;
  m.root = table.root(PageDigester(key));
  m.committed_at = static_cast<int64_t>(std::time(nullptr));
  m.committed_from = peer;
  m.mode = "departure";
  m.has_device_state = !device_state.empty();
  if (table.size() != m.pages()) return Status(Errc::mismatch, "departure table does not cover the RAM file");
  if (m.has_device_state) BNF_TRY(write_file_atomic(dir + "/device-state", device_state));
  BNF_TRY(publish(m, table));
  BNF_TRY(finish_commit(name, final_image, false));
  return m;
}

Result<uint64_t> SnapshotStore::release_zero_pages(const Manifest& m, const DigestTable& table) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(m.name));
  if (is_live(m.name)) return Status(Errc::busy, "snapshot '" + m.name + "' is in use by a running VM");
  BNF_ASSIGN_OR_RETURN(UniqueFd img, open_file(image_path(m), O_RDWR));
  return bnf::release_zero_pages(img.get(), table, PageDigester(m.key).zero_digest(), m.page_size);
}

// Writes the epoch's digest table, then its manifest: the commit point.
Status SnapshotStore::publish(Manifest& m, const DigestTable& table) {
  m.digests_file = "digests." + std::to_string(m.epoch) + "." + m.lineage.substr(0, 8) + ".bin";
  const std::string dir = dir_of(m.name);
  const auto tb = table.bytes();
  BNF_TRY(write_file_atomic(dir + "/" + m.digests_file,
                            std::string_view(reinterpret_cast<const char*>(tb.data()), tb.size())));
  return write_file_atomic(dir + "/" + kManifest, m.to_json(true));
}

// After the commit point: live marker, the `image` link, and the previous epoch's files gone.
Status SnapshotStore::finish_commit(const std::string& name, const std::string& image, bool live) {
  const std::string dir = dir_of(name);
  std::error_code ec;
  Status st = live ? mark_live(name, image) : Status::ok();
  if (!live) fs::remove(dir + "/live", ec);
  // Convenience link for tools that want a fixed path (QEMU's mem-path).
  fs::remove(dir + "/image", ec);
  fs::create_symlink(fs::path(image).filename(), dir + "/image", ec);
  (void)recover_locked(name);  // drops journals and the previous epoch's files
  return st;
}

Result<VerifyReport> SnapshotStore::verify(const std::string& name) {
  if (is_live(name)) return Status(Errc::busy, "snapshot '" + name + "' is in use by a running VM");
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  BNF_TRY(recover_locked(name).status());
  VerifyReport rep;
  BNF_ASSIGN_OR_RETURN(rep.manifest, manifest(name));
  const Manifest& m = rep.manifest;
  BNF_ASSIGN_OR_RETURN(UniqueFd img, open_file(image_path(m), O_RDONLY));
  BNF_ASSIGN_OR_RETURN(uint64_t len, file_size(img.get()));
  if (len != m.size_bytes)
    return Status(Errc::corrupt, "snapshot " + name + ": image is " + std::to_string(len) + " bytes, manifest says " +
                                     std::to_string(m.size_bytes));
  BNF_ASSIGN_OR_RETURN(Mapping map, map_file(img.get(), len, false));
  PageDigester h(m.key);
  // Holes are zero pages, not read: on tmpfs a read through the mapping
  // would allocate each (the departure gave them back, zero_pages.hpp).
  DigestTable now(m.pages());
  PageBitmap read(m.pages());
  read.set_all();
  if (m.page_size == kPageSize) (void)digest_holes(now, h, img.get(), read);
  (void)now.rehash(h, map.bytes(), read, std::thread::hardware_concurrency());
  auto stored = load_table(m);
  rep.pages_checked = now.size();
  for (uint64_t p = 0; p < now.size(); ++p)
    if (!stored.is_ok() || !(now[p] == (*stored)[p])) ++rep.pages_mismatched;
  rep.root_ok = now.root(h) == m.root;
  return rep;
}

Status SnapshotStore::drop(const std::string& name) {
  BNF_TRY(manifest(name).status());
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  take_proof(name);
  std::error_code ec;
  fs::remove(dir_of(name) + "/" + kManifest, ec);  // uncommits first: no half-dropped snapshot stays valid
  if (ec) return {Errc::io, "drop " + name + ": " + ec.message()};
  fs::remove_all(dir_of(name), ec);
  if (ec) return {Errc::io, "drop " + name + ": " + ec.message()};
  return Status::ok();
}

Status SnapshotStore::prove_ahead(const std::string& name) {
  if (is_live(name)) return Status(Errc::busy, "snapshot '" + name + "' is in use by a running VM");
  BNF_ASSIGN_OR_RETURN(Manifest m, manifest(name));
  BNF_ASSIGN_OR_RETURN(DigestTable table, load_table(m));
  BNF_ASSIGN_OR_RETURN(std::unique_ptr<BaseProof> proof, BaseProof::start(image_path(m), m, std::move(table)));
  std::unique_ptr<BaseProof> old;  // joined outside the lock
  const std::scoped_lock lk(proofs_->mu);
  old = std::exchange(proofs_->by_name[name], std::move(proof));
  return Status::ok();
}

bool SnapshotStore::proof_running(const std::string& name) const {
  const std::scoped_lock lk(proofs_->mu);
  auto it = proofs_->by_name.find(name);
  return it != proofs_->by_name.end() && !it->second->finished();
}

std::unique_ptr<BaseProof> SnapshotStore::take_proof(const std::string& name) {
  const std::scoped_lock lk(proofs_->mu);
  auto it = proofs_->by_name.find(name);
  if (it == proofs_->by_name.end()) return nullptr;
  std::unique_ptr<BaseProof> proof = std::move(it->second);
  proofs_->by_name.erase(it);
  return proof;
}

Result<std::unique_ptr<SnapshotWriter>> SnapshotStore::begin_write(const std::string& name, const WritePlan& plan) {
  BNF_ASSIGN_OR_RETURN(UniqueFd lk, lock(name));
  BNF_TRY(recover_locked(name).status());
  if (is_live(name)) return Status(Errc::busy, "snapshot '" + name + "' is in use by a running VM");
  std::optional<Manifest> base;
  if (auto m = manifest(name); m.is_ok()) base = std::move(m).value();
  if (!plan.full) {
    if (!base) return Status(Errc::not_found, "no base snapshot '" + name + "' for an incremental transfer");
    if (base->lineage != plan.base_lineage || base->epoch != plan.base_epoch)
      return Status(Errc::mismatch, "snapshot '" + name + "' is at " + base->lineage + "@" +
                                        std::to_string(base->epoch) + ", not the agreed base");
    if (base->size_bytes != plan.size_bytes)
      return Status(Errc::mismatch, "size mismatch: snapshot '" + name + "' holds " + std::to_string(base->size_bytes) +
                                        " bytes, the image has " + std::to_string(plan.size_bytes));
  }
  BNF_TRY(check_room(plan, base));
  auto w = std::unique_ptr<SnapshotWriter>(new SnapshotWriter(*this, name, plan));
  w->lock_ = std::move(lk);
  // Before the writer opens the image: its own open would void the proof.
  if (std::unique_ptr<BaseProof> proof = take_proof(name); proof && !plan.full && base) {
    w->base_proven_ = proof->holds(*base);
    w->base_doubt_ = proof->doubt();
  }
  BNF_TRY(w->start(std::move(base)));
  return w;
}

// Before anything is allocated for the declared size (space_check.hpp).
Status SnapshotStore::check_room(const WritePlan& plan, const std::optional<Manifest>& base) const {
  if (plan.page_size == 0) return {Errc::invalid_argument, "page size 0"};
  BNF_ASSIGN_OR_RETURN(SpaceAtHand at, space_at_hand(root_, base ? image_path(*base) : std::string()));
  return check_room_for_image(plan.size_bytes, plan.page_size, at);
}

SnapshotWriter::SnapshotWriter(SnapshotStore& store, std::string name, WritePlan plan)
    : store_(store), name_(std::move(name)), dir_(store.dir_of(name_)), plan_(std::move(plan)) {
  pages_ = plan_.size_bytes / plan_.page_size;
}

Status SnapshotWriter::start(std::optional<Manifest> base) {
  if (plan_.page_size != kPageSize || plan_.size_bytes == 0 || plan_.size_bytes % plan_.page_size != 0)
    return {Errc::invalid_argument, fmt::format("image size must be a non-zero multiple of {} bytes", kPageSize)};
  base_ = std::move(base);
  if (plan_.full) {
    BNF_ASSIGN_OR_RETURN(std::string lineage, random_lineage());
    image_file_ = dir_ + "/image." + lineage;
    plan_.base_lineage = lineage;
    BNF_ASSIGN_OR_RETURN(image_fd_, open_file(image_file_, O_RDWR | O_CREAT | O_TRUNC));
    if (::ftruncate(image_fd_.get(), static_cast<off_t>(plan_.size_bytes)) != 0)
      return errno_status("size image " + image_file_, errno);
    table_ = DigestTable(pages_);
    const Digest zero = PageDigester(plan_.key).zero_digest();
    for (uint64_t p = 0; p < pages_; ++p) table_[p] = zero;
  } else {
    image_file_ = store_.image_path(*base_);
    BNF_ASSIGN_OR_RETURN(image_fd_, open_file(image_file_, O_RDWR));
    BNF_ASSIGN_OR_RETURN(table_, store_.load_table(*base_));
    journaled_ = PageBitmap(pages_);
    for (unsigned s = 0; s < plan_.streams; ++s) {
      BNF_ASSIGN_OR_RETURN(UndoJournal j, UndoJournal::create(journal_path(dir_, s), base_->epoch, plan_.page_size));
      journals_.push_back(std::move(j));
    }
  }
  BNF_ASSIGN_OR_RETURN(map_, map_file(image_fd_.get(), plan_.size_bytes, true));
  return Status::ok();
}

Status SnapshotWriter::reserve(const PageRun& r) {
  const auto off = static_cast<off_t>(r.first * plan_.page_size);
  const auto len = static_cast<off_t>(r.count * plan_.page_size);
  if (::fallocate(image_fd_.get(), 0, off, len) != 0 && errno != EOPNOTSUPP)
    return errno_status("reserve image space", errno);
  // Map the pages in one call: a fault per 4 KiB page costs more than the copy.
  (void)::madvise(page_addr(r.first), static_cast<size_t>(len), MADV_POPULATE_WRITE);
  return Status::ok();
}

void SnapshotWriter::reserve_ahead(PageBitmap incoming) {
  stop_reserve();
  reserve_stop_ = false;
  reserve_thread_ = std::thread([this, bm = std::move(incoming)] {
    constexpr uint64_t kStep = 256;  // 1 MiB at a time, so that stop is prompt
    uint64_t p = bm.find_next_set(0);
    while (p != PageBitmap::npos && !reserve_stop_) {
      uint64_t end = bm.find_next_clear(p);
      if (end == PageBitmap::npos) end = bm.size();
      end = std::min(end, p + kStep);
      if (!reserve({p, end - p}).is_ok()) return;
      p = bm.find_next_set(end);
    }
  });
}

void SnapshotWriter::stop_reserve() noexcept {
  reserve_stop_ = true;
  if (reserve_thread_.joinable()) reserve_thread_.join();
}

void SnapshotWriter::start_base_check(const PageDigester& h) {
  if (plan_.full || base_check_ || base_proven_) return;
  Result<PageBitmap> holes = file_holes(image_fd_.get(), plan_.size_bytes / plan_.page_size);
  base_check_ = std::make_unique<BaseCheck>(std::span<const std::byte>(map_.data(), plan_.size_bytes), plan_.page_size,
                                            table_, h, holes.is_ok() ? std::move(*holes) : PageBitmap());
}

Result<uint64_t> SnapshotWriter::finish_base_check() {
  if (base_proven_) return uint64_t{0};
  if (!base_check_) return Status(Errc::internal, "no base check was started");
  if (!base_check_->finished()) base_mismatched_ = base_check_->finish();
  return base_mismatched_;
}

Status SnapshotWriter::prepare_overwrite(unsigned stream, std::span<const PageRun> runs) {
  if (stream >= plan_.streams) return {Errc::protocol, "stream index out of range"};
  std::vector<uint64_t> to_journal;
  for (const PageRun& r : runs) {
    BNF_TRY(reserve(r));
    if (plan_.full) continue;
    for (uint64_t p = r.first; p < r.first + r.count; ++p) {
      if (base_check_) base_check_->check(p);  // its old bytes, proven before they go
      if (!journaled_.test_and_set(p)) to_journal.push_back(p);
    }
  }
  if (to_journal.empty()) return Status::ok();
  BNF_TRY(journals_[stream].append_all(to_journal, map_.data()));
  return journals_[stream].sync();
}

Status SnapshotWriter::zero_runs(unsigned stream, std::span<const PageRun> runs) {
  if (!plan_.full) BNF_TRY(prepare_overwrite(stream, runs));
  for (const PageRun& r : runs) {
    const uint64_t len = r.count * plan_.page_size;
    if (!punch_hole(image_fd_.get(), r.first * plan_.page_size, len).is_ok()) std::memset(page_addr(r.first), 0, len);
  }
  return Status::ok();
}

void SnapshotWriter::record_landed(std::span<const PageRun> runs, const PageDigester& h) {
  landed_ += pages_in(runs);
  for (const PageRun& r : runs)
    for (uint64_t p = r.first; p < r.first + r.count; ++p) table_[p] = h.page(page_addr(p), plan_.page_size);
}

Result<Manifest> SnapshotWriter::commit(const Digest& expected_root, const PageDigester& h) {
  stop_reserve();
  if (base_check_) {
    BNF_ASSIGN_OR_RETURN(uint64_t differ, finish_base_check());
    if (differ != 0) return Status(Errc::corrupt, "the base changed behind bnf's back: not committed");
  }
  const Digest root = table_.root(h);
  if (!(root == expected_root))
    return Status(Errc::corrupt, "digest root mismatch: the landed image is not the sender's image");
  if (::fdatasync(image_fd_.get()) != 0) return errno_status("sync image", errno);
  Manifest m;
  m.name = name_;
  m.lineage = lineage();
  m.epoch = next_epoch();
  m.page_size = plan_.page_size;
  m.size_bytes = plan_.size_bytes;
  m.key = plan_.key;
  m.root = root;
  m.committed_at = static_cast<int64_t>(std::time(nullptr));
  m.committed_from = plan_.peer;
  m.mode = plan_.full ? "full" : "incremental";
  m.has_device_state = false;
  m.pages_landed = landed_;
  BNF_TRY(store_.publish(m, table_));
  committed_ = true;
  Status after = store_.finish_commit(name_, image_file_, plan_.go_live);
  lock_.reset();  // the snapshot is free for the next writer at once
  BNF_TRY(after);
  return m;
}

void SnapshotWriter::roll_back() noexcept {
  try {
    stop_reserve();
    base_check_.reset();
    map_.reset();
    if (plan_.full) {
      std::error_code ec;
      fs::remove(image_file_, ec);
      if (!base_) fs::remove_all(dir_, ec);
      return;
    }
    journals_.clear();
    (void)store_.recover_locked(name_);
  } catch (...) {
    // What is left is rolled back from its undo journal when the store next opens.
  }
}

SnapshotWriter::~SnapshotWriter() {
  try {
    stop_reserve();
    base_check_.reset();  // before the image is unmapped
  } catch (...) {
    // Rolling back below still restores the committed epoch.
  }
  if (!committed_) roll_back();
}

}  // namespace bnf
