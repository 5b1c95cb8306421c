package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent"
)

func TestSkipPublicHalves(t *testing.T) {
	var out bytes.Buffer
	got := skipPublicHalves([]string{"/h/.ssh/id_ed25519", "/h/.ssh/id_ed25519-cert.pub", "/h/.ssh/id_ed25519.pub", "/h/.ssh/id_rsa.pub", "/h/.ssh/id_rsa"}, &out)
	want := []string{"/h/.ssh/id_ed25519", "/h/.ssh/id_rsa"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// A lone .pub is kept: add then says it is a public key.
	if got := skipPublicHalves([]string{"/x/k.pub"}, &out); len(got) != 1 {
		t.Errorf("lone .pub dropped: %v", got)
	}
}

func TestPrintCertificates(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	keys := []listedKey{
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:plain"}},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:aaa", Certificate: true, Cert: &agent.CertInfo{KeyID: "alice@corp", Principals: []string{"alice", "deploy"}, CAFingerprint: "SHA256:ca", ValidBefore: now.Add(3*time.Hour + 12*time.Minute)}}},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:bbb", Certificate: true, Cert: &agent.CertInfo{KeyID: "old\x1b[2K", CAFingerprint: "SHA256:ca", ValidBefore: now.Add(-time.Second)}}},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:ccc", Certificate: true, Cert: &agent.CertInfo{KeyID: "soon", Principals: []string{"bob"}, CAFingerprint: "SHA256:ca", ValidAfter: now.Add(5 * time.Minute)}}},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:ddd", Certificate: true, Cert: &agent.CertInfo{KeyID: "forever", Principals: []string{"bob"}, CAFingerprint: "SHA256:ca"}}},
	}
	var b strings.Builder
	printCertificates(&b, keys, now)
	want := `
Certificates:
  SHA256:aaa "alice@corp": principals alice, deploy; CA SHA256:ca; expires in 3h12m
  SHA256:bbb "old\x1b[2K": no principals (any user); CA SHA256:ca; expired
  SHA256:ccc "soon": principals bob; CA SHA256:ca; not valid yet: from ` + now.Add(5*time.Minute).Local().Format(time.DateTime) + ` (in 5m00s)
  SHA256:ddd "forever": principals bob; CA SHA256:ca; never expires
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
