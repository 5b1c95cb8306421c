// Command sa-gone is a test client that asks the agent for a signature
// and exits at once, while a child it leaves behind keeps the connection
// open: the agent must then decide for a process that is gone, not for
// whoever holds the socket or gets the pid next.
//
// Usage: sa-gone SOCKET KEY.pub HOLD-SECONDS
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sa-gone:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: sa-gone SOCKET KEY.pub HOLD-SECONDS")
	}
	b, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return fmt.Errorf("parse %s: %w", args[1], err)
	}
	conn, err := net.Dial("unix", args[0])
	if err != nil {
		return err
	}
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return err
	}
	// The holder inherits the connection: the socket stays open after
	// this process exits, so the agent sees no hang-up.
	holder := exec.Command("sleep", args[2])
	holder.ExtraFiles = []*os.File{f}
	if err := holder.Start(); err != nil {
		return fmt.Errorf("start holder: %w", err)
	}
	fmt.Println(holder.Process.Pid)
	go func() { _, _ = sshagent.NewClient(conn).Sign(pub, []byte("sa-gone test data")) }()
	time.Sleep(300 * time.Millisecond) // the request is written; leave before the answer
	return nil
}
