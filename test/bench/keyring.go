//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
)

// bareFlag makes the bench binary serve a plain x/crypto keyring instead
// of measuring: the third column, an agent with no policy and no audit.
const bareFlag = "bare-keyring-serve"

// serveBareKeyring serves one agent.NewKeyring() on socket, a connection
// per goroutine, until SIGTERM; it is what the pipeline's cost is
// measured against.
func serveBareKeyring(socket string) error {
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen %s: %w", socket, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() { <-sigs; ln.Close() }()
	kr := sshagent.NewKeyring()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go func() {
			defer c.Close()
			_ = sshagent.ServeAgent(kr, c)
		}()
	}
}

// startBareKeyring runs this binary again as the bare keyring agent, a
// process of its own like the other two.
func startBareKeyring(dir, name string) (*agentProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bare keyring: %w", err)
	}
	sock := filepath.Join(dir, name+".sock")
	return startProc("bare keyring", exec.Command(self, "-"+bareFlag, sock), sock, filepath.Join(dir, name+".log"), 10*time.Second)
}
