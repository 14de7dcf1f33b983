"""Test doubles for the operator e2e tests and benchmarks: API emulator, test kubelet, fake engine."""
