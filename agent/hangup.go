package agent

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
)

// watchHangup calls hangup when the peer closes the connection, until done
// is closed (and the caller wakes the poll with a read deadline). It only
// peeks: a request the client already sent stays for ServeAgent to read.
func watchHangup(c *net.UnixConn, done <-chan struct{}, hangup context.CancelFunc) <-chan struct{} {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		raw, err := c.SyscallConn()
		if err != nil {
			return
		}
		buf := make([]byte, 1)
		closed := false
		_ = raw.Read(func(fd uintptr) bool {
			select {
			case <-done:
				return true
			default:
			}
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EAGAIN || err == unix.EINTR {
				return false // wait until readable
			}
			// n == 0 without error is end of file: the client hung up.
			// Data (a pipelined request) is not a hang-up: stop watching.
			closed = n == 0 && err == nil || err != nil
			return true
		})
		if closed {
			hangup()
		}
	}()
	return finished
}
