package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// BenchmarkSignAudit measures sign throughput through the whole pipeline
// over a real unix socket, with and without the audit log, in one run:
// the cost of "no signature without a record".
func BenchmarkSignAudit(b *testing.B) {
	for _, withAudit := range []bool{false, true} {
		for _, conns := range []int{1, 8} {
			b.Run(fmt.Sprintf("audit=%v/conns=%d", withAudit, conns), func(b *testing.B) {
				opts := Options{}
				if withAudit {
					l, err := audit.Open(filepath.Join(b.TempDir(), "audit.jsonl"), audit.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer l.Close()
					opts.Audit = l
				}
				srv := New(opts)
				sock := filepath.Join(b.TempDir(), "s")
				ln, err := Listen(sock)
				if err != nil {
					b.Fatal(err)
				}
				go srv.Serve(ln)
				defer srv.Shutdown(b.Context())
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				c, _ := net.Dial("unix", sock)
				ag := sshagent.NewClient(c)
				if err := ag.Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
					b.Fatal(err)
				}
				keys, _ := ag.List()
				c.Close()
				data := make([]byte, 64)
				b.SetParallelism((conns + 1) / 2) // GOMAXPROCS is 2 here
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("unix", sock)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					ag := sshagent.NewClient(c)
					for pb.Next() {
						if _, err := ag.Sign(keys[0], data); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
