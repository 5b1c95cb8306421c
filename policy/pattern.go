package policy

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// maxChain bounds an a>b>… entry; OpenSSH accepts at most 16 session binds.
const maxChain = 16

// partKind says how one element of a destination pattern matches a hop.
type partKind uint8

const (
	partLiteral     partKind = iota // exact host name (lower case)
	partGlob                        // '*' / '?' glob over host names
	partFingerprint                 // SHA256:… of the host key
)

// hostPart is one element of a destination pattern: "db.internal",
// "*.internal", "[git.example]:2222" or "SHA256:…".
type hostPart struct {
	kind partKind
	s    string
}

// destPattern is a compiled allow/deny entry. A single part matches a hop
// anywhere on the path; parts a>b>c match hop i when c matches hop i, b hop
// i-1 and a hop i-2.
type destPattern struct {
	raw   string
	parts []hostPart
}

// CheckPattern reports whether s is a valid allow/deny entry, with a
// message a person can act on. The agent uses it to validate
// `safe-agent add --allow/--deny`.
func CheckPattern(s string) error {
	_, err := compilePattern(s)
	return err
}

// CheckSettings validates per-key stored settings before they are stored
// (safe-agent add): every allow/deny entry must be a valid pattern and
// max_forward_depth must be 0 to 16.
func CheckSettings(s Settings) error {
	if _, err := compileSettings(s); err != nil {
		return err
	}
	if d := s.MaxForwardDepth; d != nil && (*d < 0 || *d > maxChain) {
		return fmt.Errorf("max forward depth %d is out of range: use 0 (never through a forwarded agent) to %d", *d, maxChain)
	}
	return nil
}

func compilePattern(s string) (destPattern, error) {
	if strings.TrimSpace(s) == "" {
		return destPattern{}, fmt.Errorf("empty destination: write a host name, a glob such as \"*.example.com\", \"[host]:port\", a host key fingerprint \"SHA256:…\" or \"jump>target\"")
	}
	raw := s
	elems := strings.Split(s, ">")
	if len(elems) > maxChain {
		return destPattern{}, fmt.Errorf("destination %q chains %d hosts; at most %d are possible", raw, len(elems), maxChain)
	}
	p := destPattern{raw: raw, parts: make([]hostPart, 0, len(elems))}
	for _, e := range elems {
		e = strings.TrimSpace(e)
		if e == "" {
			return destPattern{}, fmt.Errorf("destination %q has an empty host around \">\": write it like \"jump.example>db.internal\"", raw)
		}
		hp, err := compileHostPart(e)
		if err != nil {
			return destPattern{}, fmt.Errorf("destination %q: %w", raw, err)
		}
		p.parts = append(p.parts, hp)
	}
	return p, nil
}

func compileHostPart(e string) (hostPart, error) {
	if strings.HasPrefix(e, "SHA256:") {
		if err := checkFingerprint(e); err != nil {
			return hostPart{}, err
		}
		return hostPart{kind: partFingerprint, s: e}, nil
	}
	if strings.HasPrefix(e, "!") {
		return hostPart{}, fmt.Errorf("negated host %q is not supported here: put the host in deny instead", e)
	}
	h := strings.ToLower(e)
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]:")
		if end < 0 {
			return hostPart{}, fmt.Errorf("host %q: write a host with a port as \"[host]:port\"", e)
		}
		host, port := h[1:end], h[end+2:]
		if err := checkHostChars(host, e); err != nil {
			return hostPart{}, err
		}
		if port == "" {
			return hostPart{}, fmt.Errorf("host %q has an empty port: write \"[host]:port\"", e)
		}
		if !hasWildcard(port) {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return hostPart{}, fmt.Errorf("host %q: port %q is not a number from 1 to 65535", e, port)
			}
		} else if strings.Trim(port, "0123456789*?") != "" {
			return hostPart{}, fmt.Errorf("host %q: port %q may contain only digits, '*' and '?'", e, port)
		}
		h = normalizeHostPort(h)
	} else if err := checkHostChars(h, e); err != nil {
		return hostPart{}, err
	}
	if hasWildcard(h) {
		return hostPart{kind: partGlob, s: h}, nil
	}
	return hostPart{kind: partLiteral, s: h}, nil
}

func checkHostChars(h, orig string) error {
	if h == "" {
		return fmt.Errorf("host %q is empty", orig)
	}
	if len(h) > 255 {
		return fmt.Errorf("host %q is longer than 255 characters", orig)
	}
	for _, c := range h {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_', c == '*', c == '?', c == ':', c == '%':
		default:
			return fmt.Errorf("host %q contains %q; a host is letters, digits, '.', '-', '_', ':' and the wildcards '*' and '?'", orig, c)
		}
	}
	return nil
}

// checkFingerprint accepts OpenSSH's SHA256 fingerprint form:
// "SHA256:" and 43 characters of unpadded base64 (32 bytes).
func checkFingerprint(fp string) error {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(fp, "SHA256:"))
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%q is not a SHA256 fingerprint; copy it from `ssh-keygen -lf KEYFILE` (SHA256: and 43 characters)", fp)
	}
	return nil
}

// normalizeHostPort writes "[host]:22" as "host", the way OpenSSH records
// port 22 in known_hosts. h is lower case already.
func normalizeHostPort(h string) string {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]:22") {
		return h[1 : len(h)-len("]:22")]
	}
	return h
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

// globMatch reports whether s matches the OpenSSH pattern p: '*' matches any
// run of bytes, '?' exactly one byte, everything else itself.
func globMatch(p, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, 0
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if 0 < nextSx && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// globSubsumes reports whether every host matched by the known_hosts
// pattern w is also matched by the policy glob p. It is sound, not complete:
// a '*' of p may absorb anything of w, a '?' of p one byte or one '?' of w,
// a literal of p only the same literal. An allow entry matches a wildcard
// known_hosts name only when this holds, so a wildcard line never widens
// what the policy allows.
func globSubsumes(p, w string) bool {
	// cover(i, j): p[i:] covers w[j:]. Row i depends only on rows i and
	// i+1, so two rows suffice; small ones live on the stack.
	var small [2][64]bool
	var next, cur []bool
	if len(w) < len(small[0]) {
		next, cur = small[0][:len(w)+1], small[1][:len(w)+1]
	} else {
		next, cur = make([]bool, len(w)+1), make([]bool, len(w)+1)
	}
	next[len(w)] = true // p[len(p):] covers only the empty rest
	for i := len(p) - 1; i >= 0; i-- {
		cur[len(w)] = p[i] == '*' && next[len(w)]
		for j := len(w) - 1; j >= 0; j-- {
			switch p[i] {
			case '*':
				cur[j] = next[j] || cur[j+1]
			case '?':
				cur[j] = w[j] != '*' && next[j+1]
			default:
				cur[j] = w[j] == p[i] && next[j+1]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// literalEnds are the literal text of a glob before its first and after
// its last wildcard (all of it if it has none).
func literalEnds(p string) (prefix, suffix string) {
	i := strings.IndexAny(p, "*?")
	if i < 0 {
		return p, p
	}
	return p[:i], p[strings.LastIndexAny(p, "*?")+1:]
}

// globOverlap reports whether some host matches both globs. Deny entries
// use it against wildcard known_hosts names: if the host behind a wildcard
// line could be a denied one, it is denied (fail closed).
func globOverlap(p, w string) bool {
	lw := len(w) + 1
	seen := make([]bool, (len(p)+1)*lw)
	stack := [][2]int{{0, 0}}
	push := func(i, j int) {
		if !seen[i*lw+j] {
			seen[i*lw+j] = true
			stack = append(stack, [2]int{i, j})
		}
	}
	seen[0] = true
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		i, j := s[0], s[1]
		if i == len(p) && j == len(w) {
			return true
		}
		// '*' may match nothing.
		if i < len(p) && p[i] == '*' {
			push(i+1, j)
		}
		if j < len(w) && w[j] == '*' {
			push(i, j+1)
		}
		if i == len(p) || j == len(w) {
			continue
		}
		// Both consume one byte: compatible unless two different literals.
		pc, wc := p[i], w[j]
		pAny := pc == '*' || pc == '?'
		wAny := wc == '*' || wc == '?'
		if !pAny && !wAny && pc != wc {
			continue
		}
		ni, nj := i+1, j+1
		if pc == '*' {
			ni = i
		}
		if wc == '*' {
			nj = j
		}
		push(ni, nj)
	}
	return false
}
