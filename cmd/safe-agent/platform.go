//go:build !linux && !darwin

package main

// safe-agent builds for Linux and macOS only (README.md, "Platforms"):
// peer credentials, process chains and locked key memory come from those
// kernels. This undefined name makes any other GOOS fail here, saying so.
var _ = safe_agent_supports_only_linux_and_darwin
