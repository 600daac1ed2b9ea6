// The `bnf` command's subcommands. Each returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <array>

#include "common/choice.hpp"
#include "transport/secure/secure_connection.hpp"

namespace bnf::cli {

void add_daemon_command(CLI::App& app, int& rc);
void add_image_commands(CLI::App& app, int& rc);
void add_snapshot_commands(CLI::App& app, int& rc);
void add_doctor_command(CLI::App& app, int& rc);
void add_qemu_stream_command(CLI::App& app, int& rc);
void add_vm_commands(CLI::App& app, int& rc);

// `--encryption` (daemon, image push): on, or off for integrity-only records
// on a link the operator trusts.
inline constexpr std::array<Choice<transport::Protection>, 2> kEncryptions{
    {{"on", transport::Protection::encrypted}, {"off", transport::Protection::integrity}}};

// Prints "bnf: error: <message>" and returns 1.
int fail(const std::string& message);

}  // namespace bnf::cli
