package policy

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// benchPolicy is 1,000 [[key]] rules (900 comment globs, 100 fingerprints)
// over 10 jump hosts and 40 internal hosts.
func benchPolicy() string {
	var b strings.Builder
	b.WriteString("known_hosts = [\"/kh\"]\n[defaults]\nconfirm = \"never\"\ndeny = [\"*.prod.internal\"]\n")
	for i := range 1000 {
		jump := fmt.Sprintf("jump%02d.example", i%10)
		db := fmt.Sprintf("db%02d.internal", i%40)
		if i%10 == 9 {
			var fp [32]byte
			binary.BigEndian.PutUint32(fp[:], uint32(i))
			fmt.Fprintf(&b, "[[key]]\nmatch = %q\n", ssh.FingerprintSHA256(fakeKey(fp[:])))
		} else {
			fmt.Fprintf(&b, "[[key]]\nmatch = \"team-%03d-*\"\n", i)
		}
		fmt.Fprintf(&b, "allow = [%q, \"%s>%s\", \"%s>*.lab\"]\n", jump, jump, db, jump)
	}
	return b.String()
}

type fakeKey []byte

func (k fakeKey) Type() string                                 { return "fake" }
func (k fakeKey) Marshal() []byte                              { return k }
func (k fakeKey) Verify(data []byte, sig *ssh.Signature) error { return fmt.Errorf("fake") }

func benchKey(i int) ssh.PublicKey {
	var seed [32]byte
	binary.BigEndian.PutUint32(seed[:], uint32(i)+1000)
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed[:]).Public())
	if err != nil {
		panic(err)
	}
	return k
}

// benchKnownHosts has n lines, half of them hashed; lines 0..49 name the
// policy's hosts.
func benchKnownHosts(n int) string {
	var b strings.Builder
	for i := range n {
		var name string
		switch {
		case i < 10:
			name = fmt.Sprintf("jump%02d.example", i)
		case i < 50:
			name = fmt.Sprintf("db%02d.internal", i-10)
		default:
			name = fmt.Sprintf("host%05d.example", i)
		}
		if i%2 == 1 {
			name = knownhosts.HashHostname(name)
		}
		b.WriteString(name + " " + string(ssh.MarshalAuthorizedKey(benchKey(i))))
	}
	return b.String()
}

// BenchmarkDecide: the comment matches the last glob rule, the path is
// jump07 (forwarded) → db37.internal (both hashed in known_hosts), allowed by
// an a>b entry. Compare the known_hosts sizes: the time should not grow.
func BenchmarkDecide(b *testing.B) {
	src := benchPolicy()
	for _, n := range []int{1000, 10000} {
		p, err := Parse("/bench.toml", []byte(src), files{"/kh": benchKnownHosts(n)}.read)
		if err != nil {
			b.Fatal(err)
		}
		req := Request{
			Key:     Key{Comment: "team-997-laptop", Fingerprint: "SHA256:" + strings.Repeat("B", 43)},
			Hops:    []Hop{{HostKey: benchKey(7), Forwarded: true}, {HostKey: benchKey(47)}},
			Purpose: PurposeLogin,
			User:    "deploy",
		}
		if d := p.Decide(req); d.Verdict != Allow || d.Rule != `key "team-997-*" allow[1]` {
			b.Fatalf("unexpected decision %v %q: %s", d.Verdict, d.Rule, d.Reason)
		}
		b.Run(fmt.Sprintf("known_hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(req)
			}
		})
	}
}

// BenchmarkParse loads the bench policy with a 10,000-line known_hosts (half
// hashed), as `serve` does at start and on every reload. live-B is the heap
// the loaded policy keeps reachable.
func BenchmarkParse(b *testing.B) {
	src := []byte(benchPolicy())
	kh := files{"/kh": benchKnownHosts(10000)}
	var p *Policy
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = Parse("/bench.toml", src, kh.read); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var before, after runtime.MemStats
	p = nil
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, _ = Parse("/bench.toml", src, kh.read)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(p)
	runtime.KeepAlive(src) // live in both readings, so not counted
	runtime.KeepAlive(kh)
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "live-B")
}
