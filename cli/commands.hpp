// The `bnf` command's subcommands. Each returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace bnf::cli {

void add_daemon_command(CLI::App& app, int& rc);
void add_image_commands(CLI::App& app, int& rc);
void add_snapshot_commands(CLI::App& app, int& rc);
void add_doctor_command(CLI::App& app, int& rc);
void add_qemu_stream_command(CLI::App& app, int& rc);
void add_vm_commands(CLI::App& app, int& rc);

// Prints "bnf: error: <message>" and returns 1.
int fail(const std::string& message);

}  // namespace bnf::cli
