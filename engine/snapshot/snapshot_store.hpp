// SnapshotStore: the retained snapshots of one host, under <state>/snapshots/NAME/:
//   manifest.json        the committed epoch (the commit point: written atomically)
//   image.<lineage>      the memory image (sparse, mmap-able; `image` links to it)
//   digests.<epoch>.bin  the per-page digest table of that epoch
//   journal.<stream>     undo journals of a transfer in progress
//   device-state         device state blob (QEMU path)
//   lock                 flock()ed by whoever writes
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bitmap/page_bitmap.hpp"
#include "common/page.hpp"
#include "common/status.hpp"
#include "common/unique_fd.hpp"
#include "digest/page_digest.hpp"
#include "snapshot/base_check.hpp"
#include "snapshot/base_proof.hpp"
#include "snapshot/manifest.hpp"
#include "snapshot/undo_journal.hpp"

namespace bnf {

class SnapshotWriter;

struct WritePlan {
  bool full = true;  // full: new image file; incremental: in place over the base
  uint64_t size_bytes = 0;
  uint32_t page_size = kPageSize;
  unsigned streams = 1;
  std::string peer;          // who pushes (recorded in the manifest)
  DigestKey key{};           // digest key for the new epoch (the base's when incremental)
  std::string base_lineage;  // incremental: must match the committed manifest
  uint64_t base_epoch = 0;
  bool go_live = false;  // after commit the image is a running VM's RAM (arrival)
};

struct VerifyReport {
  Manifest manifest;
  uint64_t pages_checked = 0;
  uint64_t pages_mismatched = 0;
  bool root_ok = false;
  [[nodiscard]] bool ok() const { return root_ok && pages_mismatched == 0; }
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string state_dir);

  // Creates the directories and recovers every snapshot (rolls back interrupted transfers).
  Status open();
  static Status validate_name(std::string_view name);

  [[nodiscard]] Result<std::vector<Manifest>> list() const;
  [[nodiscard]] Result<Manifest> manifest(const std::string& name) const;  // not_found if none committed
  [[nodiscard]] Result<DigestTable> load_table(const Manifest& m) const;
  Result<VerifyReport> verify(const std::string& name);
  Status drop(const std::string& name);
  // Rolls back an interrupted transfer of `name`; returns pages restored.
  Result<uint64_t> recover(const std::string& name);
  Result<std::unique_ptr<SnapshotWriter>> begin_write(const std::string& name, const WritePlan& plan);

  // A running VM's RAM file lives in its snapshot directory; while it runs the
  // snapshot is *live*: never offered as a base, never written by a transfer.
  [[nodiscard]] bool is_live(const std::string& name) const;
  Status mark_live(const std::string& name, const std::string& image_path);
  // A fresh, sparse RAM file for a new VM (marked live).
  Result<std::string> new_live_image(const std::string& name, uint64_t size_bytes);
  [[nodiscard]] Result<std::string> live_image(const std::string& name) const;
  // The VM left: its RAM file becomes the retained snapshot (lineage, epoch, table).
  Result<Manifest> commit_departure(const std::string& name, const std::string& image_path, const std::string& lineage,
                                    uint64_t epoch, const DigestKey& key, const DigestTable& table,
                                    const std::string& peer, std::string_view device_state);
  // Gives the host back the committed snapshot's zero pages (`table`: its
  // digest table); returns the bytes released (zero_pages.hpp).
  Result<uint64_t> release_zero_pages(const Manifest& m, const DigestTable& table);

  // Proves the committed snapshot `name` against its table in the background
  // (base_proof.hpp), so that the next incremental transfer into it, if
  // nothing touched the image meanwhile, needs no proof of its own.
  Status prove_ahead(const std::string& name);
  [[nodiscard]] bool proof_running(const std::string& name) const;

  [[nodiscard]] std::string dir_of(const std::string& name) const;
  // Refuses a transfer whose declared size does not fit here (space_check.hpp).
  [[nodiscard]] Status check_room(const WritePlan& plan, const std::optional<Manifest>& base) const;
  [[nodiscard]] std::string image_path(const Manifest& m) const;

 private:
  friend class SnapshotWriter;

  // Proofs of retained snapshots made while their VMs are away (base_proof.hpp).
  struct BaseProofs {
    std::mutex mu;
    std::map<std::string, std::unique_ptr<BaseProof>> by_name;
  };
  Result<UniqueFd> lock(const std::string& name) const;
  Result<uint64_t> recover_locked(const std::string& name);
  // Callers hold the snapshot's lock.
  Status publish(Manifest& m, const DigestTable& table);
  Status finish_commit(const std::string& name, const std::string& image, bool live);
  // Ends the proof made ahead of `name`, before a writer or a drop touches it.
  std::unique_ptr<BaseProof> take_proof(const std::string& name);
  std::string root_;
  std::unique_ptr<BaseProofs> proofs_ = std::make_unique<BaseProofs>();
};

// One transfer into one snapshot. Holds the snapshot's lock; if destroyed before
// commit(), everything it did is undone.
class SnapshotWriter {
 public:
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  [[nodiscard]] uint64_t pages() const { return pages_; }
  [[nodiscard]] uint32_t page_size() const { return plan_.page_size; }
  [[nodiscard]] const std::string& image_file() const { return image_file_; }
  [[nodiscard]] const std::string& lineage() const { return plan_.full ? plan_.base_lineage : base_->lineage; }
  [[nodiscard]] uint64_t next_epoch() const { return plan_.full ? 1 : base_->epoch + 1; }
  [[nodiscard]] std::byte* page_addr(uint64_t page) const { return map_.data() + page * plan_.page_size; }
  [[nodiscard]] const WritePlan& plan() const { return plan_; }

  // Makes `runs` safe to overwrite: journals their old contents (incremental)
  // and reserves their space (so a full disk is an error, not a SIGBUS).
  Status prepare_overwrite(unsigned stream, std::span<const PageRun> runs);
  // Reserves and maps the pages of `incoming` in page order on a thread of its
  // own, ahead of the streams, so that allocation overlaps the network receive.
  // Idempotent with prepare_overwrite(); stops at the first error (the stream
  // that reaches the page reports it).
  void reserve_ahead(PageBitmap incoming);
  // Zeroes pages (punching holes: a sparse image stays sparse).
  Status zero_runs(unsigned stream, std::span<const PageRun> runs);
  // Incremental: proves the base's bytes against its table while pages land
  // (see base_check.hpp). finish_base_check() returns the pages that differ;
  // commit() refuses a base whose check was started and not passed.
  void start_base_check(const PageDigester& h);
  Result<uint64_t> finish_base_check();
  [[nodiscard]] std::vector<uint64_t> base_check_examples() const {
    return base_check_ ? base_check_->examples() : std::vector<uint64_t>{};
  }
  [[nodiscard]] bool base_check_pending() const { return base_check_ && !base_check_->finished(); }
  // The base was proven while its VM was away and untouched since: no check runs.
  [[nodiscard]] bool base_proven_ahead() const { return base_proven_; }
  // Why a proof made ahead did not count ("" if none was made).
  [[nodiscard]] const std::string& base_proof_doubt() const { return base_doubt_; }
  // Records the digests of pages that just landed.
  void record_landed(std::span<const PageRun> runs, const PageDigester& h);
  [[nodiscard]] const DigestTable& table() const { return table_; }

  // Makes the new epoch durable and current. Fails (and rolls back) unless the
  // landed image's digest root equals `expected_root`.
  Result<Manifest> commit(const Digest& expected_root, const PageDigester& h);

 private:
  friend class SnapshotStore;
  SnapshotWriter(SnapshotStore& store, std::string name, WritePlan plan);
  Status start(std::optional<Manifest> base);
  void roll_back() noexcept;
  void stop_reserve() noexcept;
  Status reserve(const PageRun& r);

  SnapshotStore& store_;
  std::string name_;
  std::string dir_;
  WritePlan plan_;
  uint64_t pages_ = 0;
  UniqueFd lock_;
  UniqueFd image_fd_;
  Mapping map_;
  std::string image_file_;
  std::optional<Manifest> base_;
  std::vector<UndoJournal> journals_;
  PageBitmap journaled_;
  DigestTable table_;
  std::atomic<uint64_t> landed_{0};
  bool committed_ = false;
  std::atomic<bool> reserve_stop_{false};
  std::thread reserve_thread_;
  std::unique_ptr<BaseCheck> base_check_;
  uint64_t base_mismatched_ = 0;
  bool base_proven_ = false;
  std::string base_doubt_;
};

}  // namespace bnf
