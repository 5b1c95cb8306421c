package keystore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func FuzzParsePrivateKeyFile(f *testing.F) {
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk := genRSA(2048)(f).(*rsa.PrivateKey)
	openssh := func(k any, comment string) []byte {
		b, err := ssh.MarshalPrivateKey(k, comment)
		if err != nil {
			f.Fatal(err)
		}
		return pem.EncodeToMemory(b)
	}
	encrypted, err := ssh.MarshalPrivateKeyWithPassphrase(ed, "c", []byte("pw"))
	if err != nil {
		f.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(ed)
	s1, _ := x509.MarshalECPrivateKey(ec)
	seeds := [][]byte{
		openssh(ed, "ed"),
		openssh(ec, "ec"),
		openssh(rk, "rsa"),
		pem.EncodeToMemory(encrypted),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: s1}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}),
		pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}}),
		pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte(openSSHMagic)}),
		[]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl c\n"),
	}
	for _, s := range seeds {
		f.Add(s, "pw")
		f.Add(s[:len(s)/2], "")
	}
	f.Fuzz(func(t *testing.T, data []byte, pass string) {
		priv, _, err := ParsePrivateKeyFile("f", data, passphrase(pass))
		if err != nil {
			if priv != nil {
				t.Fatalf("error %v with a key", err)
			}
			return
		}
		if err := checkKeyType(priv); err != nil {
			t.Fatalf("returned a key Seal refuses: %v", err)
		}
		out, err := MarshalPrivateKey(priv, "x")
		if err != nil {
			t.Fatalf("parsed key does not marshal: %v", err)
		}
		if _, _, err := ParsePrivateKeyFile("again", out, nil); err != nil {
			t.Fatalf("marshalled key does not parse: %v", err)
		}
	})
}

func FuzzDecodeStoredKey(f *testing.F) {
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	sk, err := NewStoredKey(ed, "comment", Settings{Confirm: true, Allow: []string{"a>b"}, Deny: []string{"*.x"}, MaxForwardDepth: depth(2), Lifetime: time.Minute}, timeZero)
	if err != nil {
		f.Fatal(err)
	}
	payload, err := encodeStoredKey(sk)
	if err != nil {
		f.Fatal(err)
	}
	single, _, _ := encodeItems(payload, 1<<20)
	manifest, _, _ := encodeItems(payload, 64)
	idx, _ := encodeIndex([]string{sk.Fingerprint})
	idxItem, _, _ := encodeItems(idx, 1<<20)
	for _, s := range [][]byte{single, manifest, idxItem, []byte(itemPrefix), []byte(chunkedPrefix + "2:" + string(bytes.Repeat([]byte("a"), 64)))} {
		f.Add(s)
	}
	f.Add([]byte(itemPrefix + "eyJ2IjoxfQ=="))
	f.Fuzz(func(t *testing.T, value []byte) {
		if h, err := parseHeader(value); err == nil && h.chunks > 0 {
			if h.chunks > maxChunks || len(h.sumText) != 64 {
				t.Fatalf("bad manifest accepted: %+v", h)
			}
			_ = chunkAccount(sk.Fingerprint, h.sumText, h.chunks)
		}
		if h, err := parseHeader(value); err == nil && h.chunks == 0 {
			if p, err := decodeBase64(h.single); err == nil {
				_, _ = decodeIndex(p)
			}
		}
		got, err := decodeSingleStoredKey(value)
		if err != nil {
			return
		}
		if !validFingerprint(got.Fingerprint) || len(got.PrivateKeyPEM) == 0 || checkSettings(got.Settings) != nil {
			t.Fatalf("decoded an invalid record: %s", describe(got))
		}
		// What decodes must encode again and decode to the same record.
		p, err := encodeStoredKey(got)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		again, err := decodeStoredKey(p)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if describe(again) != describe(got) || !bytes.Equal(again.PrivateKeyPEM, got.PrivateKeyPEM) {
			t.Fatalf("round trip changed the record:\n%s\n%s", describe(got), describe(again))
		}
	})
}
