package agent

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peerCred reads the connecting process's credentials with SO_PEERCRED.
func peerCred(c *net.UnixConn) (peerInfo, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return peerInfo{}, fmt.Errorf("peer credentials: %w", serr)
	}
	return peerInfo{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, nil
}

// procInfo is one process of a chain, read from /proc.
type procInfo struct {
	PID   int
	PPID  int
	Comm  string
	Start uint64 // field 22 of /proc/PID/stat: clock ticks after boot; with the pid, it names one process
}

func readProc(pid int) (procInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so split at the last ')'.
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procInfo{}, fmt.Errorf("unexpected /proc/%d/stat format", pid)
	}
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	fields := strings.Fields(s[closing+1:])
	if len(fields) < 20 {
		return procInfo{}, fmt.Errorf("unexpected /proc/%d/stat format", pid)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procInfo{}, fmt.Errorf("unexpected /proc/%d/stat format", pid)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return procInfo{}, fmt.Errorf("unexpected /proc/%d/stat format", pid)
	}
	return procInfo{PID: pid, PPID: ppid, Comm: s[open+1 : closing], Start: start}, nil
}

// processChain reads the peer's process and up to depth ancestors, e.g.
// "ssh (1234) ← git (1200) ← zsh (1000)". Processes that vanish end the
// chain early; that is fine, it is information for people.
func processChain(pid, depth int) (chain string, exe string) {
	exe, _ = os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	var parts []string
	for i := 0; i <= depth && pid > 1; i++ {
		p, err := readProc(pid)
		if err != nil {
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", p.Comm, p.PID))
		pid = p.PPID
	}
	if len(parts) == 0 {
		return fmt.Sprintf("pid %d (exited)", pid), exe
	}
	return strings.Join(parts, " ← "), exe
}
