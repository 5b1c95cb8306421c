package agent

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// The agent's tests build wire messages themselves, as a client would,
// rather than with internal/sshwire's parsers: the two must agree only
// through the protocol.

// msgUserAuthRequest is SSH_MSG_USERAUTH_REQUEST (RFC 4252).
const msgUserAuthRequest = 50

// sshsigMagic starts the data ssh-keygen -Y sign asks an agent to sign.
const sshsigMagic = "SSHSIG"

// userAuthWire is a publickey SSH_MSG_USERAUTH_REQUEST as signed,
// preceded by the session id (RFC 4252 section 7).
type userAuthWire struct {
	SessionID  []byte
	Type       byte
	User       string
	Service    string
	Method     string
	SigFollows byte
	Alg        string
	KeyBlob    []byte
	Rest       []byte `ssh:"rest"`
}

// hostboundWire follows userAuthWire for publickey-hostbound-v00.
type hostboundWire struct {
	HostKey []byte
}

// btKeys are host and CA keys shared by the agent's tests (generated once).
var btKeys = sync.OnceValue(func() map[string]ssh.Signer {
	out := map[string]ssh.Signer{}
	add := func(name string, priv any, err error) {
		if err != nil {
			panic(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			panic(err)
		}
		out[name] = s
	}
	for _, name := range []string{"ed25519", "jump", "target", "other", "db", "web", "ca", "ca2", "user"} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		add(name, priv, err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	add("p256", priv, err)
	return out
})

func btKey(t testing.TB, name string) ssh.Signer {
	t.Helper()
	s, ok := btKeys()[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return s
}

// btSign signs data, with a given algorithm when alg is not "".
func btSign(t testing.TB, s ssh.Signer, alg string, data []byte) *ssh.Signature {
	t.Helper()
	var sig *ssh.Signature
	var err error
	if alg == "" {
		sig, err = s.Sign(rand.Reader, data)
	} else {
		sig, err = s.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, data, alg)
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return sig
}

// btBindWire is the session-bind payload as PROTOCOL.agent lays it out.
type btBindWire struct {
	HostKey   []byte
	SessionID []byte
	Signature []byte
	Forwarded bool
}

func btPayload(key ssh.PublicKey, sid []byte, sig *ssh.Signature, fwd bool) []byte {
	return ssh.Marshal(btBindWire{key.Marshal(), sid, ssh.Marshal(sig), fwd})
}

// btBind is a valid bind of host key name (its certificate when cert is
// not nil) over sid.
func btBind(t testing.TB, name string, cert *ssh.Certificate, sid string, fwd bool) []byte {
	t.Helper()
	s := btKey(t, name)
	var key ssh.PublicKey = s.PublicKey()
	if cert != nil {
		key = cert
	}
	return btPayload(key, []byte(sid), btSign(t, s, "", []byte(sid)), fwd)
}

// captureDir holds real OpenSSH 9.2 wire data (see its README); the
// wire parsers' tests read it too.
var captureDir = filepath.Join("internal", "sshwire", "testdata", "openssh92")

// btRecord is one record of the capture's capture.jsonl.
type btRecord struct {
	Conn int    `json:"conn"`
	Op   string `json:"op"`
	Name string `json:"name"`
	Hex  string `json:"hex"`
}

func btCapture(t testing.TB) []btRecord {
	t.Helper()
	f, err := os.Open(filepath.Join(captureDir, "capture.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []btRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r btRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (r btRecord) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(r.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
