package sshwire

// What is being signed: a login, an SSHSIG, or something opaque. The login
// parser follows OpenSSH's ssh-agent.c parse_userauth_request, the SSHSIG
// parser its parse_sshsig_request and PROTOCOL.sshsig.

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// Login methods OpenSSH clients sign.
const (
	MethodPublicKey          = "publickey"
	MethodPublicKeyHostbound = "publickey-hostbound-v00@openssh.com"
)

// msgUserAuthRequest is SSH_MSG_USERAUTH_REQUEST (RFC 4252).
const msgUserAuthRequest = 50

// sshsigMagic starts the data ssh-keygen -Y sign asks an agent to sign.
const sshsigMagic = "SSHSIG"

// SignData is what Classify found in the data to sign. Get one from
// Classify: policy.PurposeLogin is Purpose's zero value, so a zero
// SignData reads as a login.
type SignData struct {
	Purpose policy.Purpose

	// Login fields.
	User      string
	Service   string // always "ssh-connection"
	Method    string // MethodPublicKey or MethodPublicKeyHostbound
	Alg       string // the signature algorithm the login names
	SessionID []byte
	HostKey   ssh.PublicKey // MethodPublicKeyHostbound only: the server's host key
	KeyBlob   []byte        // the user key named inside the login request
	// Cert is that key when it is a certificate (the certificate may be
	// of the signing key: see loginNamesKey).
	Cert *ssh.Certificate

	// SSHSIG fields.
	Namespace string
	HashAlg   string
}

// userAuthWire is a publickey SSH_MSG_USERAUTH_REQUEST as signed, preceded
// by the session id (RFC 4252 section 7).
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

type hostboundWire struct {
	HostKey []byte
}

// sshsigWire follows the "SSHSIG" magic (PROTOCOL.sshsig, the signed data).
type sshsigWire struct {
	Namespace string
	Reserved  []byte
	HashAlg   string
	Hash      []byte
}

// classify says what data is. It never fails: anything that is not
// exactly a publickey login request or an SSHSIG is opaque. Strings with
// NUL bytes are refused where OpenSSH would read a C string (OpenSSH
// accepts one trailing NUL; here that data is opaque).
func classify(data []byte) SignData {
	if sd, ok := parseLogin(data); ok {
		return sd
	}
	if sd, ok := parseSSHSIG(data); ok {
		return sd
	}
	return SignData{Purpose: policy.PurposeOpaque}
}

// Classify says what data to be signed by key is: a login (with user and
// session), an SSHSIG (with namespace) or opaque. A login that names
// another key, or an algorithm that key cannot sign, is opaque, as
// OpenSSH's parse_userauth_request treats it.
func Classify(data []byte, key ssh.PublicKey) SignData {
	sd := classify(data)
	if sd.Purpose == policy.PurposeLogin && !loginNamesKey(sd, key) {
		return SignData{Purpose: policy.PurposeOpaque}
	}
	return sd
}

func parseLogin(data []byte) (SignData, bool) {
	var w userAuthWire
	if err := ssh.Unmarshal(data, &w); err != nil {
		return SignData{}, false
	}
	if len(w.SessionID) == 0 || w.Type != msgUserAuthRequest || w.SigFollows != 1 ||
		w.Service != "ssh-connection" || hasNUL(w.User, w.Service, w.Method, w.Alg) {
		return SignData{}, false
	}
	// Parsed keys alias their input; the caller may zero data.
	named, err := ssh.ParsePublicKey(bytes.Clone(w.KeyBlob))
	if err != nil {
		return SignData{}, false
	}
	sd := SignData{
		Purpose:   policy.PurposeLogin,
		User:      w.User,
		Service:   w.Service,
		Method:    w.Method,
		Alg:       w.Alg,
		SessionID: bytes.Clone(w.SessionID),
		KeyBlob:   bytes.Clone(w.KeyBlob),
	}
	sd.Cert, _ = named.(*ssh.Certificate)
	switch w.Method {
	case MethodPublicKey:
		if len(w.Rest) != 0 {
			return SignData{}, false
		}
	case MethodPublicKeyHostbound:
		var hb hostboundWire
		if err := ssh.Unmarshal(w.Rest, &hb); err != nil {
			return SignData{}, false
		}
		hk, err := ssh.ParsePublicKey(bytes.Clone(hb.HostKey))
		if err != nil {
			return SignData{}, false
		}
		sd.HostKey = hk
	default:
		return SignData{}, false
	}
	return sd, true
}

func parseSSHSIG(data []byte) (SignData, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(sshsigMagic))
	if !ok {
		return SignData{}, false
	}
	var w sshsigWire
	if err := ssh.Unmarshal(rest, &w); err != nil || hasNUL(w.Namespace, w.HashAlg) {
		return SignData{}, false
	}
	return SignData{Purpose: policy.PurposeSSHSIG, Namespace: w.Namespace, HashAlg: w.HashAlg}, true
}

func hasNUL(ss ...string) bool {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
	return false
}

// loginAlgs lists the algorithms a login may name for a key type other
// than its own name (RSA with SHA-2, FIDO webauthn).
var loginAlgs = map[string][]string{
	ssh.KeyAlgoRSA:        {ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSASHA512},
	ssh.CertAlgoRSAv01:    {ssh.CertAlgoRSAv01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSASHA512v01},
	ssh.KeyAlgoSKECDSA256: {ssh.KeyAlgoSKECDSA256, "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"},
}

// loginNamesKey is OpenSSH's expected_key check: the login's key is the
// signing key and its algorithm suits that key. (OpenSSH compares key
// types only, so an ECDSA login naming another curve passes there; not
// here.) One addition: a login that names a user certificate of exactly
// the signing key is a login for that key. ssh does this when the
// certificate is a file (CertificateFile, KEY-cert.pub beside -i KEY) or
// when the agent holds the key both plain and certified: the sign request
// names the plain key, the login names the certificate. OpenSSH's agent
// signs such data as unidentified; safe-agent must know it is a login to
// apply its rules.
func loginNamesKey(sd SignData, key ssh.PublicKey) bool {
	if key == nil {
		return false
	}
	named, err := ssh.ParsePublicKey(sd.KeyBlob)
	if err != nil {
		return false
	}
	if !hopKeyEqual(named, key) {
		cert, ok := named.(*ssh.Certificate)
		if _, keyIsCert := key.(*ssh.Certificate); !ok || keyIsCert || cert.CertType != ssh.UserCert || !hopKeyEqual(cert.Key, key) {
			return false
		}
	}
	if algs, ok := loginAlgs[named.Type()]; ok {
		return slices.Contains(algs, sd.Alg)
	}
	return sd.Alg == named.Type()
}

// CheckLoginBinding refuses a login that is not bound to the connection's
// last session-bind: its session id must be the last bind's, a host-bound
// login must name the last bind's host key, and the last bind must be one
// for authentication (a login on a forwarding bind's session would be a
// login to a host the client is already logged in to). With no binds, or
// for data that is not a login, there is nothing to check and it returns
// nil. The error says why, without key material.
func CheckLoginBinding(sd SignData, b *BindState) error {
	if sd.Purpose != policy.PurposeLogin || b == nil || len(b.Hops) == 0 {
		return nil
	}
	last := b.Hops[len(b.Hops)-1]
	if subtle.ConstantTimeCompare(sd.SessionID, last.SessionID) != 1 {
		return fmt.Errorf("the login's session id is not that of the connection's last session-bind (%s, %d binds)",
			hostKeyLabel(last.HostKey), len(b.Hops))
	}
	if sd.HostKey != nil && !hopKeyEqual(sd.HostKey, last.HostKey) {
		return fmt.Errorf("the login names host key %s but the connection's last session-bind is for %s",
			hostKeyLabel(sd.HostKey), hostKeyLabel(last.HostKey))
	}
	if last.Forwarded {
		return errors.New("the login's session is bound for agent forwarding, not for authentication")
	}
	return nil
}
