package main

import "golang.org/x/sys/unix"

// platformService is systemd on Linux.
func platformService(d serviceDeps) (serviceManager, error) { return systemdService{d}, nil }

func memlockHardLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0
	}
	return rl.Max
}
