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
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// keyFixture is a private key file and the public key it must yield.
type keyFixture struct {
	data []byte
	pub  ssh.PublicKey
}

// sshKeygen makes a key file with ssh-keygen; args are extra options.
func sshKeygen(t *testing.T, passphrase, comment string, args ...string) keyFixture {
	t.Helper()
	bin := needProgram(t, "ssh-keygen", "openssh-client")
	path := filepath.Join(t.TempDir(), "key")
	cmd := exec.Command(bin, append([]string{"-q", "-N", passphrase, "-C", comment, "-f", path}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pubText, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	return keyFixture{data, pub}
}

// goPEM makes a PEM file from a Go key with the given marshaller.
func goPEM(t *testing.T, blockType string, priv any, marshal func(any) ([]byte, error)) keyFixture {
	t.Helper()
	der, err := marshal(priv)
	if err != nil {
		t.Fatal(err)
	}
	fx := keyFixture{data: pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})}
	if s, err := ssh.NewSignerFromKey(priv); err == nil { // not for keys SSH refuses
		fx.pub = s.PublicKey()
	}
	return fx
}

func pkcs8(k any) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k) }
func sec1(k any) ([]byte, error)  { return x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey)) }
func pkcs1(k any) ([]byte, error) { return x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey)), nil }

func passphrase(p string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(p), nil }
}

func TestParsePrivateKeyFileFormats(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk := genRSA(2048)(t).(*rsa.PrivateKey)
	tests := []struct {
		name        string
		fixture     func(t *testing.T) keyFixture
		pass        string
		wantComment string
	}{
		{"openssh-ed25519", func(t *testing.T) keyFixture { return sshKeygen(t, "", "me@laptop", "-t", "ed25519") }, "", "me@laptop"},
		{"openssh-ecdsa-256", func(t *testing.T) keyFixture { return sshKeygen(t, "", "ec256", "-t", "ecdsa", "-b", "256") }, "", "ec256"},
		{"openssh-ecdsa-384", func(t *testing.T) keyFixture { return sshKeygen(t, "", "ec384", "-t", "ecdsa", "-b", "384") }, "", "ec384"},
		{"openssh-ecdsa-521", func(t *testing.T) keyFixture { return sshKeygen(t, "", "ec521", "-t", "ecdsa", "-b", "521") }, "", "ec521"},
		{"openssh-rsa-3072", func(t *testing.T) keyFixture { return sshKeygen(t, "", "rsa3072", "-t", "rsa", "-b", "3072") }, "", "rsa3072"},
		{"openssh-ed25519-passphrase", func(t *testing.T) keyFixture {
			return sshKeygen(t, "correct horse", "hidden", "-t", "ed25519")
		}, "correct horse", ""},
		{"openssh-ecdsa-passphrase", func(t *testing.T) keyFixture {
			return sshKeygen(t, "correct horse", "hidden", "-t", "ecdsa")
		}, "correct horse", ""},
		{"pem-pkcs1-rsa-ssh-keygen", func(t *testing.T) keyFixture { return sshKeygen(t, "", "", "-t", "rsa", "-b", "2048", "-m", "PEM") }, "", ""},
		{"pem-pkcs1-rsa-encrypted", func(t *testing.T) keyFixture {
			return sshKeygen(t, "correct horse", "", "-t", "rsa", "-b", "2048", "-m", "PEM")
		}, "correct horse", ""},
		{"pem-sec1-ecdsa-ssh-keygen", func(t *testing.T) keyFixture { return sshKeygen(t, "", "", "-t", "ecdsa", "-m", "PEM") }, "", ""},
		{"pem-sec1-ecdsa-encrypted", func(t *testing.T) keyFixture {
			return sshKeygen(t, "correct horse", "", "-t", "ecdsa", "-m", "PEM")
		}, "correct horse", ""},
		{"pkcs8-rsa-ssh-keygen", func(t *testing.T) keyFixture { return sshKeygen(t, "", "", "-t", "rsa", "-b", "2048", "-m", "PKCS8") }, "", ""},
		{"pkcs8-ed25519", func(t *testing.T) keyFixture { return goPEM(t, "PRIVATE KEY", ed, pkcs8) }, "", ""},
		{"pkcs8-ecdsa", func(t *testing.T) keyFixture { return goPEM(t, "PRIVATE KEY", ec, pkcs8) }, "", ""},
		{"pkcs8-rsa", func(t *testing.T) keyFixture { return goPEM(t, "PRIVATE KEY", rk, pkcs8) }, "", ""},
		{"sec1-ecdsa", func(t *testing.T) keyFixture { return goPEM(t, "EC PRIVATE KEY", ec, sec1) }, "", ""},
		{"pkcs1-rsa", func(t *testing.T) keyFixture { return goPEM(t, "RSA PRIVATE KEY", rk, pkcs1) }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := tt.fixture(t)
			asked := 0
			pass := func() ([]byte, error) { asked++; return []byte(tt.pass), nil }
			priv, comment, err := ParsePrivateKeyFile("KEYFILE", fx.data, pass)
			if err != nil {
				t.Fatalf("ParsePrivateKeyFile: %v", err)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.pass != ""]; asked != want {
				t.Errorf("passphrase asked %d times, want %d", asked, want)
			}
			if comment != tt.wantComment {
				t.Errorf("comment %q, want %q", comment, tt.wantComment)
			}
			s, err := ssh.NewSignerFromKey(normalizeKey(priv))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.PublicKey().Marshal(), fx.pub.Marshal()) {
				t.Fatalf("parsed key %s, want %s", ssh.FingerprintSHA256(s.PublicKey()), ssh.FingerprintSHA256(fx.pub))
			}

			// And it survives storage: marshal, parse again, same key and comment.
			out, err := MarshalPrivateKey(priv, "stored comment")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
				t.Fatalf("MarshalPrivateKey wrote %.40q", out)
			}
			again, comment, err := ParsePrivateKeyFile("stored", out, nil)
			if err != nil || comment != "stored comment" {
				t.Fatalf("re-parse: %v, comment %q", err, comment)
			}
			s2, _ := ssh.NewSignerFromKey(normalizeKey(again))
			if !bytes.Equal(s2.PublicKey().Marshal(), fx.pub.Marshal()) {
				t.Error("MarshalPrivateKey round trip changed the key")
			}
		})
	}
}

func TestParsePrivateKeyFileRefusals(t *testing.T) {
	edFile := sshKeygen(t, "", "c", "-t", "ed25519")
	encFile := sshKeygen(t, "correct horse", "c", "-t", "ed25519")
	legacyEnc := sshKeygen(t, "correct horse", "", "-t", "ecdsa", "-m", "PEM")
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	short, _ := rsa.GenerateKey(rand.Reader, 1024)

	// A line removed from the middle: the base64 stays valid, the
	// structure does not.
	lines := strings.Split(string(edFile.data), "\n")
	cut := strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), "\n")

	tests := []struct {
		name    string
		data    func(t *testing.T) []byte
		pass    func() ([]byte, error)
		want    string
		isWrong bool // errors.Is(err, ErrWrongPassphrase)
		noAsk   bool // the passphrase must not be asked for
	}{
		{name: "wrong-passphrase-openssh", data: func(*testing.T) []byte { return encFile.data }, pass: passphrase("wrong"), want: "wrong passphrase for KEYFILE", isWrong: true},
		{name: "wrong-passphrase-legacy-pem", data: func(*testing.T) []byte { return legacyEnc.data }, pass: passphrase("wrong"), want: "wrong passphrase for KEYFILE", isWrong: true},
		{name: "empty-passphrase", data: func(*testing.T) []byte { return encFile.data }, pass: passphrase(""), want: "wrong passphrase for KEYFILE", isWrong: true},
		{name: "no-way-to-ask", data: func(*testing.T) []byte { return encFile.data }, pass: nil, want: "KEYFILE is passphrase-protected and there is no terminal or SSH_ASKPASS to ask for it"},
		{name: "passphrase-prompt-fails", data: func(*testing.T) []byte { return encFile.data }, pass: func() ([]byte, error) { return nil, errors.New("cancelled") }, want: "read passphrase for KEYFILE: cancelled"},
		{name: "truncated", data: func(*testing.T) []byte { return edFile.data[:len(edFile.data)/2] }, want: "KEYFILE is truncated or damaged: its PEM block has no END line or broken base64", noAsk: true},
		{name: "line-missing", data: func(*testing.T) []byte { return []byte(cut) }, want: "KEYFILE is truncated or damaged", noAsk: true},
		{name: "public-key", data: func(*testing.T) []byte { return ssh.MarshalAuthorizedKey(edFile.pub) }, want: "KEYFILE is a public key: give the private key file (usually the same name without .pub)"},
		{name: "empty", data: func(*testing.T) []byte { return nil }, want: "KEYFILE is empty"},
		{name: "text", data: func(*testing.T) []byte { return []byte("hello\n") }, want: "KEYFILE does not contain a private key in OpenSSH, PEM or PKCS#8 format"},
		{name: "certificate", data: func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})
		}, want: `KEYFILE holds a "CERTIFICATE" PEM block, not a private key`},
		{name: "dsa-openssh", data: func(t *testing.T) []byte { return sshKeygen(t, "", "", "-t", "dsa").data }, want: "KEYFILE: DSA keys are not supported"},
		{name: "dsa-openssh-encrypted", data: func(t *testing.T) []byte { return sshKeygen(t, "secret1", "", "-t", "dsa").data }, want: "KEYFILE: DSA keys are not supported", noAsk: true},
		{name: "dsa-pem", data: func(t *testing.T) []byte { return sshKeygen(t, "", "", "-t", "dsa", "-m", "PEM").data }, want: "KEYFILE: DSA keys are not supported"},
		{name: "dsa-pkcs8", data: func(t *testing.T) []byte { return sshKeygen(t, "", "", "-t", "dsa", "-m", "PKCS8").data }, want: "KEYFILE: DSA keys are not supported"},
		{name: "rsa-1024-openssh-encrypted", data: func(t *testing.T) []byte {
			return sshKeygen(t, "secret1", "", "-t", "rsa", "-b", "1024").data
		}, want: "KEYFILE: RSA keys shorter than 2048 bits are refused (this one has 1024)", noAsk: true},
		{name: "rsa-1024-pkcs1", data: func(t *testing.T) []byte { return goPEM(t, "RSA PRIVATE KEY", short, pkcs1).data }, want: "KEYFILE: RSA keys shorter than 2048 bits are refused (this one has 1024)"},
		{name: "ecdsa-p224", data: func(t *testing.T) []byte { return goPEM(t, "PRIVATE KEY", p224, pkcs8).data }, want: "KEYFILE: ECDSA curve P-224 is not supported by SSH"},
		{name: "encrypted-pkcs8", data: func(t *testing.T) []byte { return opensslEncryptedPKCS8(t) }, want: "KEYFILE: encrypted PKCS#8 keys (BEGIN ENCRYPTED PRIVATE KEY) are not supported: decrypt it with `openssl pkey -in KEYFILE -out KEYFILE.plain`", noAsk: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked := false
			var pass func() ([]byte, error)
			if tt.pass != nil {
				pass = func() ([]byte, error) { asked = true; return tt.pass() }
			} else if tt.noAsk {
				pass = func() ([]byte, error) { asked = true; return []byte("secret1"), nil }
			}
			priv, _, err := ParsePrivateKeyFile("KEYFILE", tt.data(t), pass)
			if err == nil {
				t.Fatalf("parsed a %T", priv)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to start %q", err, tt.want)
			}
			if errors.Is(err, ErrWrongPassphrase) != tt.isWrong {
				t.Errorf("errors.Is(err, ErrWrongPassphrase) = %v", !tt.isWrong)
			}
			if tt.noAsk && asked {
				t.Error("asked for a passphrase for a key that is refused anyway")
			}
		})
	}
}

func opensslEncryptedPKCS8(t *testing.T) []byte {
	bin := needProgram(t, "openssl", "openssl")
	path := filepath.Join(t.TempDir(), "k")
	out, err := exec.Command(bin, "genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret1", "-out", path).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestMarshalPrivateKeyRefuses(t *testing.T) {
	short, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := MarshalPrivateKey(short, ""); err == nil || !strings.Contains(err.Error(), "RSA keys shorter than 2048 bits are refused") {
		t.Errorf("MarshalPrivateKey(rsa-1024) = %v", err)
	}
	if _, err := NewStoredKey("x", "", Settings{}, timeZero); err == nil {
		t.Error("NewStoredKey accepted a string")
	}
}
