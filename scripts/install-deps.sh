#!/usr/bin/env bash
# Installs every Debian 12 package bnf needs to build, test and benchmark.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ gcc binutils meson ninja-build pkg-config python3 \
  liburing-dev libisal-dev libnuma-dev libxxhash-dev \
  nlohmann-json3-dev libcli11-dev libfmt-dev libssl-dev \
  libgtest-dev libbenchmark-dev \
  clang libclang-rt-14-dev clang-format clang-tidy \
  iperf3 iproute2 util-linux procps \
  qemu-system-x86 qemu-utils \
  linux-image-cloud-amd64 busybox-static cpio gnuplot-nox >/dev/null
