package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestProcessAlive: a running process is alive (on every platform: the
// ssh-agent COMMAND form stops its agent when this says no), and one that
// has exited, reaped or a zombie, is not.
func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process is reported dead")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !processAlive(pid) {
		t.Errorf("running child %d reported dead", pid)
	}
	_ = cmd.Process.Kill()
	// Not yet reaped: a zombie is dead too.
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Errorf("killed, unreaped child %d still reported alive", pid)
	}
	_ = cmd.Wait()
	if processAlive(pid) {
		t.Errorf("reaped child %d still reported alive", pid)
	}
}
