// bnf: back-and-forth live migration engine. See README.md.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.hpp"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"bnf: back-and-forth migration engine (retained snapshots, incremental page transfer)"};
  app.require_subcommand(1);
  int rc = 0;
  bnf::cli::add_daemon_command(app, rc);
  bnf::cli::add_image_commands(app, rc);
  bnf::cli::add_snapshot_commands(app, rc);
  bnf::cli::add_doctor_command(app, rc);
  bnf::cli::add_qemu_stream_command(app, rc);
  bnf::cli::add_vm_commands(app, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}

}  // namespace

// What escapes a command (an allocation refused, a library's throw) is one
// error line and a non-zero exit, not an abort.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bnf: error: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "bnf: error: internal error\n");
  }
  return 1;
}
