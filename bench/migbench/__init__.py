"""Migration benchmark harness: scenarios x strategies on real QEMU (see bench/README.md)."""
