package main

import (
	"errors"

	"golang.org/x/sys/unix"
)

// szomb is p_stat of a zombie (SZOMB in <sys/proc.h>).
const szomb = 5

// processAlive reports whether pid still runs: kill 0 succeeds or says
// EPERM (it exists, owned by someone else), and sysctl kern.proc.pid
// does not show it as a zombie waiting to be reaped.
func processAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return true // it answered kill 0; not knowing its state, keep it
	}
	return kp.Proc.P_stat != szomb
}
