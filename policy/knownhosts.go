package policy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// wildName is the name a wildcard known_hosts line gives a key: the pattern
// itself (and the line's negations). It only says "some host matching pat",
// so allow entries match it by subsumption and deny entries by overlap.
type wildName struct {
	pat  string
	negs []string
}

// hostEntry is what known_hosts says about one host key.
type hostEntry struct {
	names   []string // literal names, lower case, in file order
	wild    []wildName
	fp      string // SHA256 fingerprint of the key
	revoked string // "FILE:LINE" of an @revoked line, or ""
}

// caLine is one @cert-authority line.
type caLine struct {
	lits   []string // literal host patterns
	globs  []string
	negs   []string
	hashed []hashedName
}

type hashedName struct {
	salt, hash []byte
}

type hashFn = func(name string) []byte

func newHashFn(salt []byte) hashFn {
	m := hmac.New(sha1.New, salt)
	var buf [sha1.Size]byte
	return func(name string) []byte {
		m.Reset()
		m.Write([]byte(name))
		return m.Sum(buf[:0])
	}
}

func (h hashedName) matchesWith(f hashFn, name string) bool {
	return hmac.Equal(f(name), h.hash)
}

type hashedKey struct {
	hashedName
	key ssh.PublicKey
}

// hostIndex maps host keys to names. It is built once, at load; lookups are
// keyed by the marshaled key so a decision never scans a file.
type hostIndex struct {
	keys   map[string]*hostEntry // by string(key.Marshal())
	cas    map[string][]caLine   // CA key → its @cert-authority lines
	byName map[string][]ssh.PublicKey
	byFP   map[string]ssh.PublicKey
	hashed []hashedKey // kept for ResolveHost of names the policy does not mention

	lines, hashedLines, caLines, revokedLines int
}

func newHostIndex() *hostIndex {
	return &hostIndex{
		keys:   map[string]*hostEntry{},
		cas:    map[string][]caLine{},
		byName: map[string][]ssh.PublicKey{},
		byFP:   map[string]ssh.PublicKey{},
	}
}

// maxWarnings bounds how many bad known_hosts lines are reported one by one.
const maxWarnings = 20

// addFile indexes one known_hosts file. policyNames are the literal host
// names the policy mentions; hashed entries are matched against them only.
// Bad lines are skipped with a warning, as ssh does.
func (ix *hostIndex) addFile(file string, data []byte, policyNames []string, warn func(string)) {
	bad := 0
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if err := ix.addLine(file, lineNo, t, policyNames); err != nil {
			bad++
			if bad <= maxWarnings {
				warn(fmt.Sprintf("%s:%d: skipped: %v", file, lineNo, err))
			}
		}
	}
	if bad > maxWarnings {
		warn(fmt.Sprintf("%s: %d more lines skipped", file, bad-maxWarnings))
	}
}

func (ix *hostIndex) addLine(file string, lineNo int, line []byte, policyNames []string) error {
	marker, hosts, key, _, _, err := ssh.ParseKnownHosts(line)
	if err == io.EOF {
		return fmt.Errorf("not a known_hosts line: want host names, a key type and a key")
	}
	if err != nil {
		return fmt.Errorf("bad host key: %s", strings.TrimPrefix(err.Error(), "ssh: "))
	}
	if key == nil {
		return fmt.Errorf("no host key on the line")
	}
	where := fmt.Sprintf("%s:%d", file, lineNo)
	kb := string(key.Marshal())
	switch marker {
	case "revoked":
		e := ix.entry(kb, key)
		if e.revoked == "" {
			e.revoked = where
		}
		ix.revokedLines++
		return nil
	case "cert-authority":
		var ca caLine
		for _, h := range hosts {
			switch {
			case strings.HasPrefix(h, "!"):
				ca.negs = append(ca.negs, strings.ToLower(h[1:]))
			case strings.HasPrefix(h, "|"):
				hn, err := parseHashed(h)
				if err != nil {
					return err
				}
				ca.hashed = append(ca.hashed, hn)
			case hasWildcard(h):
				ca.globs = append(ca.globs, strings.ToLower(h))
			default:
				ca.lits = append(ca.lits, normalizeHostPort(strings.ToLower(h)))
			}
		}
		ix.cas[kb] = append(ix.cas[kb], ca)
		ix.caLines++
		return nil
	case "":
	default:
		return fmt.Errorf("unknown marker @%s", marker)
	}

	var lits, globs, negs []string
	var hashed []hashedName
	for _, h := range hosts {
		switch {
		case h == "":
		case strings.HasPrefix(h, "!"):
			if n := strings.ToLower(h[1:]); n != "" && !strings.HasPrefix(n, "|") {
				negs = append(negs, n)
			}
		case strings.HasPrefix(h, "|"):
			hn, err := parseHashed(h)
			if err != nil {
				return err
			}
			hashed = append(hashed, hn)
		case hasWildcard(h):
			globs = append(globs, strings.ToLower(h))
		default:
			lits = append(lits, normalizeHostPort(strings.ToLower(h)))
		}
	}
	e := ix.entry(kb, key)
	ix.lines++
	negated := func(n string) bool {
		for _, ng := range negs {
			if globMatch(ng, n) {
				return true
			}
		}
		return false
	}
	for _, n := range lits {
		if !negated(n) {
			e.addName(n)
		}
	}
	for _, g := range globs {
		e.wild = append(e.wild, wildName{pat: g, negs: negs})
	}
	for _, hn := range hashed {
		ix.hashedLines++
		ix.hashed = append(ix.hashed, hashedKey{hashedName: hn, key: key})
		f := newHashFn(hn.salt)
		for _, n := range policyNames {
			if hn.matchesWith(f, n) && !negated(n) {
				e.addName(n)
			}
		}
	}
	for _, n := range e.names {
		if !slices.ContainsFunc(ix.byName[n], func(k ssh.PublicKey) bool { return string(k.Marshal()) == kb }) {
			ix.byName[n] = append(ix.byName[n], key)
		}
	}
	return nil
}

func (ix *hostIndex) entry(kb string, key ssh.PublicKey) *hostEntry {
	e := ix.keys[kb]
	if e == nil {
		e = &hostEntry{fp: ssh.FingerprintSHA256(key)}
		ix.keys[kb] = e
		ix.byFP[e.fp] = key
	}
	return e
}

func (e *hostEntry) addName(n string) {
	if !slices.Contains(e.names, n) {
		e.names = append(e.names, n)
	}
}

func parseHashed(h string) (hashedName, error) {
	f := strings.Split(h, "|")
	if len(f) != 4 || f[0] != "" || f[1] != "1" {
		return hashedName{}, fmt.Errorf("hashed host %q is not in the |1|salt|hash form", h)
	}
	salt, err1 := base64.StdEncoding.DecodeString(f[2])
	hash, err2 := base64.StdEncoding.DecodeString(f[3])
	if err1 != nil || err2 != nil || len(hash) != sha1.Size || len(salt) == 0 {
		return hashedName{}, fmt.Errorf("hashed host %q has a bad salt or hash", h)
	}
	return hashedName{salt: salt, hash: hash}, nil
}

// hop is one resolved hop: everything Decide needs about a host key.
type hop struct {
	names   []string
	wild    []wildName
	fps     []string // the key's fingerprint; for a certificate also the certified key's and the CA's
	revoked string   // why the key is revoked, or ""
	fwd     bool
	note    string // e.g. why a certificate gave no names
}

func (h *hop) named() bool { return len(h.names) > 0 || len(h.wild) > 0 }

// label is how reasons name the host.
func (h *hop) label() string {
	switch {
	case len(h.names) > 0:
		return h.names[0]
	case len(h.wild) > 0:
		return fmt.Sprintf("a host matching %q", h.wild[0].pat)
	case len(h.fps) > 0:
		return "an unnamed host (" + h.fps[0] + ")"
	default:
		return "an unnamed host"
	}
}

// certTime selects how a host certificate's validity period is checked.
type certTime struct {
	now   time.Time
	check bool // false: period not checked (list filtering, display)
}

// resolve looks a hop's host key up. For a host certificate it also checks
// the certificate against the @cert-authority lines: names are its
// principals that the CA line's patterns cover.
func (ix *hostIndex) resolve(h Hop, ct certTime) hop {
	out := hop{fwd: h.Forwarded}
	if h.HostKey == nil {
		return out
	}
	kb := h.HostKey.Marshal()
	cert, isCert := h.HostKey.(*ssh.Certificate)
	if !isCert {
		if e := ix.keys[string(kb)]; e != nil {
			out.fps = []string{e.fp}
			if e.revoked != "" {
				out.revoked = "the host key " + e.fp + " is marked @revoked in " + e.revoked
				return out
			}
			out.names, out.wild = e.names, e.wild
			return out
		}
		out.fps = []string{ssh.FingerprintSHA256(h.HostKey)}
		return out
	}

	out.fps = []string{ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(cert)}
	for _, k := range []ssh.PublicKey{cert, cert.Key, cert.SignatureKey} {
		if e := ix.keys[string(k.Marshal())]; e != nil && e.revoked != "" {
			out.revoked = "the host key " + e.fp + " is marked @revoked in " + e.revoked
			return out
		}
	}
	// A certified host is also known by its plain key, as ssh falls back
	// to it.
	if e := ix.keys[string(cert.Key.Marshal())]; e != nil {
		out.names = append(out.names, e.names...)
		out.wild = append(out.wild, e.wild...)
	}
	lines := ix.cas[string(cert.SignatureKey.Marshal())]
	if len(lines) == 0 {
		return out
	}
	if cert.CertType != ssh.HostCert {
		out.note = "its certificate is not a host certificate"
		return out
	}
	if len(cert.ValidPrincipals) == 0 {
		out.note = "its certificate names no hosts"
		return out
	}
	if ct.check && ct.now.IsZero() {
		out.note = "the certificate could not be checked (no time given)"
		return out
	}
	checker := ssh.CertChecker{Clock: func() time.Time {
		if ct.check {
			return ct.now
		}
		return time.Unix(int64(cert.ValidAfter), 0)
	}}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		out.note = "its certificate is not valid: " + strings.TrimPrefix(err.Error(), "ssh: ")
		return out
	}
	for _, pr := range cert.ValidPrincipals {
		n := strings.ToLower(pr)
		if n == "" || strings.ContainsAny(n, "*?!, ") {
			continue // a principal is a literal host name
		}
		for _, ca := range lines {
			if ca.covers(n) && !slices.Contains(out.names, n) {
				out.names = append(out.names, n)
			}
		}
	}
	return out
}

func (ca *caLine) covers(n string) bool {
	for _, ng := range ca.negs {
		if globMatch(ng, n) {
			return false
		}
	}
	if slices.Contains(ca.lits, n) {
		return true
	}
	for _, g := range ca.globs {
		if globMatch(g, n) {
			return true
		}
	}
	for _, h := range ca.hashed {
		if h.matchesWith(newHashFn(h.salt), n) {
			return true
		}
	}
	return false
}

// lookupName returns the host keys known_hosts lists for a name (plain or
// hashed) or a fingerprint. Used by `policy explain`, not by Decide.
func (ix *hostIndex) lookupName(name string) []ssh.PublicKey {
	if strings.HasPrefix(name, "SHA256:") {
		if k, ok := ix.byFP[name]; ok {
			return []ssh.PublicKey{k}
		}
		return nil
	}
	n := normalizeHostPort(strings.ToLower(name))
	out := slices.Clone(ix.byName[n])
	seen := map[string]bool{}
	for _, k := range out {
		seen[string(k.Marshal())] = true
	}
	for _, h := range ix.hashed {
		kb := string(h.key.Marshal())
		if seen[kb] || !h.matchesWith(newHashFn(h.salt), n) {
			continue
		}
		if e := ix.keys[kb]; e != nil && e.revoked != "" {
			continue
		}
		seen[kb] = true
		out = append(out, h.key)
	}
	return out
}
