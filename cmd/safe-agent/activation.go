package main

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// listenFDsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// activationListener returns the listening unix socket systemd passed this
// process (socket activation: LISTEN_PID is our pid and LISTEN_FDS >= 1),
// or nil when none was passed. It removes LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES from the environment either way, so that no program the
// agent starts takes them for its own. getenv and pid are os.Getenv and
// os.Getpid outside tests.
func activationListener(getenv func(string) string, pid int) (*net.UnixListener, error) {
	pidStr, fdsStr := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pidStr == "" && fdsStr == "" {
		return nil, nil
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		_ = os.Unsetenv(v)
	}
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		return nil, nil // meant for another process (a wrapper that exec'ed us without updating it)
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q is not a number of sockets", fdsStr)
	}
	if n == 0 {
		return nil, nil
	}
	if n > 1 {
		return nil, fmt.Errorf("socket activation: %d sockets passed, safe-agent takes one: give safe-agent.socket a single ListenStream= line", n)
	}
	fd := listenFDsStart
	if err := checkListeningUnixStream(fd); err != nil {
		return nil, fmt.Errorf("socket activation: file descriptor %d: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "systemd socket")
	l, err := net.FileListener(f) // a dup: prompt programs do not inherit it
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("socket activation: file descriptor %d: %w", fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("socket activation: file descriptor %d is not a unix socket: use ListenStream=%%t/safe-agent/agent.sock", fd)
	}
	return ul, nil
}

// checkListeningUnixStream makes sure fd is what safe-agent.socket
// declares: a listening AF_UNIX stream socket (Accept=no).
func checkListeningUnixStream(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	if typ != unix.SOCK_STREAM {
		return fmt.Errorf("not a stream socket: use ListenStream=, not ListenDatagram= or ListenSequentialPacket=")
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	if _, ok := sa.(*unix.SockaddrUnix); !ok {
		return fmt.Errorf("not a unix socket: use ListenStream=%%t/safe-agent/agent.sock, not a TCP port")
	}
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && on == 0 {
		return fmt.Errorf("not a listening socket: safe-agent.socket must not set Accept=yes")
	}
	return nil
}
