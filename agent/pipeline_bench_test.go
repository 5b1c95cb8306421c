package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/keystore"
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
				sock := serveBench(b, opts)
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				pub := addBenchKey(b, sock, priv)
				signParallel(b, sock, pub, conns)
			})
		}
	}
}

// BenchmarkSignPipeline is the path `serve` runs, in one process so that
// it can be profiled (go test -bench SignPipeline -cpuprofile cpu.out):
// the bench command's policy (1,000 [[key]] rules, a 10,000-line
// known_hosts, the bench key matched by fingerprint in the last rule),
// the audit log with its mirror hook, and keys sealed in the keystore's
// vault. The client shares the process, as it shares the CPUs in
// test/bench.
func BenchmarkSignPipeline(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			dir := b.TempDir()
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			sshPub, err := ssh.NewPublicKey(priv.Public())
			if err != nil {
				b.Fatal(err)
			}
			policyPath := writeBenchPolicy(b, dir, ssh.FingerprintSHA256(sshPub))
			log := slog.New(slog.DiscardHandler)
			al, err := audit.Open(filepath.Join(dir, "state", "audit.jsonl"), audit.Options{Logger: log})
			if err != nil {
				b.Fatal(err)
			}
			defer al.Close()
			al.SetMirror(audit.MirrorOptions{Logger: log, Mode: func() (string, bool) { return audit.MirrorNone, true }})
			ph, err := NewPolicyHolder(policyPath, true, log, al)
			if err != nil {
				b.Fatal(err)
			}
			v, err := keystore.NewVault(log, keystore.VaultOptions{AllowUnlocked: true})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			sock := serveBench(b, Options{Logger: log, Policy: ph, Audit: al,
				Seal: func(priv any) (PrivateKey, error) { return v.Seal(priv) }})
			pub := addBenchKey(b, sock, priv)
			signParallel(b, sock, pub, conns)
		})
	}
}

// serveBench serves opts on a fresh socket until the benchmark ends.
func serveBench(b *testing.B, opts Options) string {
	b.Helper()
	srv := New(opts)
	sock := filepath.Join(b.TempDir(), "s")
	ln, err := Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(b.Context()) })
	return sock
}

func addBenchKey(b *testing.B, sock string, priv ed25519.PrivateKey) *sshagent.Key {
	b.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ag := sshagent.NewClient(c)
	if err := ag.Add(sshagent.AddedKey{PrivateKey: priv, Comment: "bench"}); err != nil {
		b.Fatal(err)
	}
	keys, err := ag.List()
	if err != nil || len(keys) != 1 {
		b.Fatalf("list: %v (%d keys)", err, len(keys))
	}
	return keys[0]
}

// signParallel signs 64-byte data over conns connections, each a
// goroutine doing sequential requests.
func signParallel(b *testing.B, sock string, pub *sshagent.Key, conns int) {
	data := make([]byte, 64)
	b.SetParallelism((conns + 1) / 2) // GOMAXPROCS is 2 here
	b.ReportAllocs()
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
			if _, err := ag.Sign(pub, data); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// writeBenchPolicy writes test/bench's policy: 1,000 [[key]] rules with
// allow lists naming hosts of a 10,000-line known_hosts (every other line
// hashed), the bench key's rule last.
func writeBenchPolicy(b *testing.B, dir, fingerprint string) string {
	b.Helper()
	const rules, hostLines, jumps, inners = 1000, 10000, 10, 40
	name := func(i int) string {
		switch {
		case i < jumps:
			return fmt.Sprintf("jump%02d.example", i)
		case i < jumps+inners:
			return fmt.Sprintf("db%02d.internal", i-jumps)
		}
		return fmt.Sprintf("host%05d.example", i)
	}
	var kh strings.Builder
	for i := range hostLines {
		var seed [32]byte
		binary.BigEndian.PutUint32(seed[:], uint32(i)+7)
		k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed[:]).Public())
		if err != nil {
			b.Fatal(err)
		}
		n := name(i)
		switch {
		case i%2 == 1:
			n = knownhosts.HashHostname(n)
		case i%10 == 4:
			n = fmt.Sprintf("[%s]:2222", n)
		}
		kh.WriteString(n + " " + string(ssh.MarshalAuthorizedKey(k)))
	}
	khPath := filepath.Join(dir, "known_hosts")
	var p strings.Builder
	fmt.Fprintf(&p, "known_hosts = [%q]\nunknown_destination = \"deny\"\n\n", khPath)
	p.WriteString("[defaults]\nconfirm = \"forwarded\"\nmax_forward_depth = 1\nnamespaces = [\"git\", \"file\"]\ndeny = [\"*.prod.internal\"]\n\n")
	for i := range rules - 1 {
		jump, inner := name(i%jumps), name(jumps+i%inners)
		fmt.Fprintf(&p, "[[key]]\nmatch = \"team-%03d-*\"\nallow = [%q, \"%s>%s\", \"%s>*.lab\", \"[%s]:2222\"]\n", i, jump, jump, inner, jump, inner)
		if i%3 == 0 {
			fmt.Fprintf(&p, "deny = [\"%s>*.secret\"]\n", jump)
		}
		if i%5 == 0 {
			p.WriteString("confirm = \"always\"\n")
		}
		p.WriteString("\n")
	}
	fmt.Fprintf(&p, "[[key]]\nmatch = %q\nallow = [\"jump00.example\", \"jump00.example>db00.internal\"]\nconfirm = \"never\"\n", fingerprint)
	policyPath := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(khPath, []byte(kh.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(policyPath, []byte(p.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return policyPath
}
