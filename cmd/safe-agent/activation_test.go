package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestActivationListenerEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "not activated", env: map[string]string{}},
		{name: "for another process", env: map[string]string{"LISTEN_PID": "1", "LISTEN_FDS": "1"}},
		{name: "no sockets", env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "0"}},
		{name: "garbage", env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "x"}, wantErr: `LISTEN_FDS="x" is not a number`},
		{name: "two sockets", env: map[string]string{"LISTEN_PID": "4242", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}, wantErr: "2 sockets passed, safe-agent takes one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			l, err := activationListener(func(k string) string { return tc.env[k] }, 4242)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil || l != nil {
				t.Fatalf("got %v, %v; want no listener and no error", l, err)
			}
			// Programs the agent starts never see them.
			for k := range tc.env {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("%s=%s left in the environment", k, v)
				}
			}
		})
	}
}

func TestCheckListeningUnixStream(t *testing.T) {
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, _ := l.File()
	defer lf.Close()
	if err := checkListeningUnixStream(int(lf.Fd())); err != nil {
		t.Errorf("listening unix socket refused: %v", err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tf, _ := tl.(*net.TCPListener).File()
	defer tf.Close()
	if err := checkListeningUnixStream(int(tf.Fd())); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("TCP socket: %v", err)
	}
	fds, _ := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	if err := checkListeningUnixStream(fds[0]); err == nil || !strings.Contains(err.Error(), "must not set Accept=yes") {
		t.Errorf("connected socket: %v", err)
	}
	dg, _ := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	defer syscall.Close(dg)
	if err := checkListeningUnixStream(dg); err == nil || !strings.Contains(err.Error(), "not a stream socket") {
		t.Errorf("datagram socket: %v", err)
	}
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	if err := checkListeningUnixStream(int(f.Fd())); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("/dev/null: %v", err)
	}
}
