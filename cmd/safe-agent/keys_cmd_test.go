package main

import (
	"bytes"
	"reflect"
	"testing"
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
