package agent

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// peerCred reads the connecting process's uid (LOCAL_PEERCRED) and pid
// (LOCAL_PEERPID).
func peerCred(c *net.UnixConn) (peerInfo, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", err)
	}
	var p peerInfo
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var xu *unix.Xucred
		xu, serr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if serr != nil {
			return
		}
		p.UID = int(xu.Uid)
		if xu.Ngroups > 0 {
			p.GID = int(xu.Groups[0])
		}
		p.PID, serr = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	}); err != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", serr)
	}
	return p, nil
}

// processChain reads the peer's process and up to depth ancestors with
// sysctl kern.proc.pid.
func processChain(pid, depth int) (chain string, exe string) {
	var parts []string
	for i := 0; i <= depth && pid > 1; i++ {
		kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
		if err != nil {
			break
		}
		comm := unix.ByteSliceToString(kp.Proc.P_comm[:])
		parts = append(parts, fmt.Sprintf("%s (%d)", comm, pid))
		pid = int(kp.Eproc.Ppid)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("pid %d (exited)", pid), ""
	}
	return strings.Join(parts, " ← "), ""
}
