//go:build linux

package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

func oldOnce(t testing.TB, dir string, opts Options, stream []byte) {
		logPath := filepath.Join(dir, "audit.jsonl")
		al, err := audit.Open(logPath, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(logPath)
		defer al.Close()
		o := opts
		o.Audit = al
		srv := New(o)
		l := newFzListener()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown after the input: %v", err)
			}
			if err := <-served; err != nil {
				t.Errorf("serve: %v", err)
			}
		}()
		c := l.dial(t)
		defer c.Close()
		u := fzUnlocks(stream)
		limit := 5*time.Second + time.Duration(u*(u+1)/2)*100*time.Millisecond
		_ = c.SetDeadline(time.Now().Add(limit))
		go func() {
			_, _ = c.Write(stream)
			_ = c.(*net.UnixConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server neither answered nor closed the connection within %v (%d-byte input)", limit, len(stream))
			}
		}
		c2 := l.dial(t)
		defer c2.Close()
		_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := sshagent.NewClient(c2).List(); err != nil {
			t.Fatalf("a second connection is not served after the input: %v", err)
		}
}

func BenchmarkOldOnce(b *testing.B) {
	ltQuietLog(b)
	seeds := fzSeeds(b)
	dir := b.TempDir()
	opts := fzOptions(b)
	for i := 0; b.Loop(); i++ {
		s := seeds[i%len(seeds)]
		if fzUnlocks(s) > 0 { continue }
		t0 := time.Now()
		oldOnce(b, dir, opts, s)
		if d := time.Since(t0); d > 50*time.Millisecond { b.Logf("seed %d: %v", i%len(seeds), d) }
	}
}
