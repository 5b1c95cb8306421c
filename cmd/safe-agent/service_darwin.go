package main

// platformService is launchd on macOS.
func platformService(d serviceDeps) (serviceManager, error) { return launchdService{d}, nil }

// memlockHardLimit is not used by launchd agents.
func memlockHardLimit() uint64 { return ^uint64(0) }
