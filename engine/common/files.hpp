// Small file helpers with Status returns: atomic replace, whole-file read, mapping.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.hpp"
#include "common/unique_fd.hpp"

namespace bnf {

// What bnf keeps (guest RAM, digest keys, journals, VM folders) is its user's
// alone unless a caller asks otherwise: a user's own files (`bnf image make`).
inline constexpr int kPrivateFileMode = 0600;
inline constexpr int kPrivateDirMode = 0700;
inline constexpr int kUserFileMode = 0644;

// Writes `data` to `path` atomically: temp file, fsync, rename, fsync of the
// directory. The file gets `mode` exactly (a temp file left behind included).
Status write_file_atomic(const std::string& path, std::string_view data, int mode = kPrivateFileMode);
Result<std::string> read_file(const std::string& path);
Status fsync_dir(const std::string& dir);
Result<UniqueFd> open_file(const std::string& path, int flags, int mode = kPrivateFileMode);
Result<uint64_t> file_size(int fd);
// Maps `len` bytes of `fd` shared; read-only unless `writable`. len 0 gives an empty mapping.
Result<Mapping> map_file(int fd, uint64_t len, bool writable);
Status pwrite_all(int fd, const void* buf, size_t len, uint64_t off);
Status pread_all(int fd, void* buf, size_t len, uint64_t off);
// Deallocates [off, off + len) of `fd`, which then reads as zeros (file size kept).
Status punch_hole(int fd, uint64_t off, uint64_t len);
// Calls fn(start, end) for each run of data (not a hole: SEEK_DATA /
// SEEK_HOLE) of `fd` in [from, to), in order; a run whose end cannot be
// found counts as data to `to`.
Status for_each_data_run(int fd, uint64_t from, uint64_t to, const std::function<void(uint64_t, uint64_t)>& fn);
// Sends every byte on a socket (no SIGPIPE); `what` names the socket in errors.
Status send_all(int fd, std::string_view bytes, std::string_view what);
bool path_exists(const std::string& path);
// Creates `path` and its missing parents; the folders it creates get `mode`.
Status make_dirs(const std::string& path, int mode = kPrivateDirMode);

}  // namespace bnf
