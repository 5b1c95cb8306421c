//go:build !linux && !darwin

package main

import (
	"fmt"
	"runtime"
)

func platformService(serviceDeps) (serviceManager, error) {
	return nil, fmt.Errorf("safe-agent service is not supported on %s: start `safe-agent serve` from your session's autostart", runtime.GOOS)
}

func memlockHardLimit() uint64 { return ^uint64(0) }
