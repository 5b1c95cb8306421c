package policy

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
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

// caLine is one @cert-authority line.
type caLine struct {
	lits   []string // literal host patterns
	globs  []string
	negs   []string
	hashed []hashedName
}

// hashedName is a |1|salt|hash host: the salt followed by the HMAC-SHA1.
type hashedName struct {
	sh []byte
}

func (h hashedName) salt() []byte { return h.sh[:len(h.sh)-sha1.Size] }
func (h hashedName) hash() []byte { return h.sh[len(h.sh)-sha1.Size:] }

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
	return hmac.Equal(f(name), h.hash())
}

// hashedLine is one hashed host of a plain known_hosts line: its salt and
// hash are hostIndex.saltHash[off:off+saltLen+sha1.Size].
type hashedLine struct {
	off, saltLen int32
	seq          int32 // the line's place in load order
}

// pendingHashed is a hashedLine while the index is built.
type pendingHashed struct {
	hashedName
	negs []string // the line's !patterns
	seq  int32
}

// hostEntry locates one host key's data in the hostIndex arrays: each field
// is where the key's part starts; it ends where the next entry's starts.
type hostEntry struct {
	blob, names, hashed int32
}

// entryExtra is what only few keys have.
type entryExtra struct {
	wild    []wildName
	revoked string // "FILE:LINE" of an @revoked line, or ""
}

// hostIndex maps host keys to names. It is built once, at load, and packed
// into a few arrays (a 10,000-line known_hosts costs about a megabyte);
// lookups are keyed by the marshaled key so a decision never scans a file.
//
// Hashed lines are matched against the policy's literal names only when a
// key's names are first asked for, and only that key's lines: loading
// hashes nothing. The result is memoized, so Decide stays fast and
// deterministic.
type hostIndex struct {
	// slots is an open-addressing hash table over the entries' key blobs:
	// entry+1, or 0 for an empty slot. A map would cost more than the
	// blobs themselves.
	slots    []int32
	seed     maphash.Seed
	blobs    string       // every entry's marshaled key, entry by entry
	ents     []hostEntry  // one per key, in order of first appearance, then an end marker
	names    []string     // literal names, lower case, entry by entry, in file order
	nameSeq  []int32      // the line that gave each name, in load order
	hashed   []hashedLine // hashed hosts, entry by entry, in file order
	saltHash []byte
	negs     map[int32][]string // hashed index → the !patterns of its line, if any
	extra    map[int32]*entryExtra
	cas      map[string][]caLine // CA key → its @cert-authority lines

	policyNames []string // the only names hashed hosts are checked against

	mu   sync.RWMutex
	memo map[int32][]string // entry → its names with hashed matches merged in

	lines, hashedLines, caLines, revokedLines int
}

func newHostIndex() *hostIndex {
	return (&indexBuilder{}).freeze()
}

// maxWarnings bounds how many bad known_hosts lines are reported one by one.
const maxWarnings = 20

// indexBuilder collects known_hosts lines at load; freeze packs them.
type indexBuilder struct {
	policyNames []string
	keys        map[string]int32
	ents        []*pendingEntry
	cas         map[string][]caLine
	seq         int32 // lines seen
	blobBytes   int

	lines, hashedLines, caLines, revokedLines int
}

type pendingEntry struct {
	blob    string
	names   []string
	seqs    []int32
	hashed  []pendingHashed
	wild    []wildName
	revoked string
}

// newIndexBuilder starts an index; policyNames are the literal host names
// the policy mentions, the only names hashed entries are matched against.
func newIndexBuilder(policyNames []string) *indexBuilder {
	return &indexBuilder{policyNames: policyNames, keys: map[string]int32{}, cas: map[string][]caLine{}}
}

// addFile indexes one known_hosts file. Bad lines are skipped with a
// warning, as ssh does.
func (b *indexBuilder) addFile(file string, data []byte, warn func(string)) {
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
		if err := b.addLine(file, lineNo, t); err != nil {
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

func (b *indexBuilder) addLine(file string, lineNo int, line []byte) error {
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
	kb := key.Marshal()
	if b.seq == math.MaxInt32 || b.blobBytes > math.MaxInt32-len(kb) {
		return fmt.Errorf("known_hosts is too large: split it or remove old lines")
	}
	b.seq++
	switch marker {
	case "revoked":
		e := b.entry(kb)
		if e.revoked == "" {
			e.revoked = fmt.Sprintf("%s:%d", file, lineNo)
		}
		b.revokedLines++
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
		b.cas[string(kb)] = append(b.cas[string(kb)], ca)
		b.caLines++
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
	e := b.entry(kb)
	b.lines++
	for _, n := range lits {
		if !negatedBy(negs, n) && !slices.Contains(e.names, n) {
			e.names = append(e.names, n)
			e.seqs = append(e.seqs, b.seq)
		}
	}
	for _, g := range globs {
		e.wild = append(e.wild, wildName{pat: g, negs: negs})
	}
	for _, hn := range hashed {
		b.hashedLines++
		e.hashed = append(e.hashed, pendingHashed{hashedName: hn, negs: negs, seq: b.seq})
	}
	return nil
}

func (b *indexBuilder) entry(kb []byte) *pendingEntry {
	if i, ok := b.keys[string(kb)]; ok {
		return b.ents[i]
	}
	e := &pendingEntry{blob: string(kb)}
	b.keys[e.blob] = int32(len(b.ents))
	b.ents = append(b.ents, e)
	b.blobBytes += len(kb)
	return e
}

// freeze packs what was collected into a hostIndex: a few exactly sized
// arrays instead of objects per key, so the index stays small and the
// garbage of loading can all be returned to the OS.
func (b *indexBuilder) freeze() *hostIndex {
	ix := &hostIndex{
		seed:         maphash.MakeSeed(),
		cas:          b.cas,
		policyNames:  b.policyNames,
		lines:        b.lines,
		hashedLines:  b.hashedLines,
		caLines:      b.caLines,
		revokedLines: b.revokedLines,
	}
	if ix.cas == nil {
		ix.cas = map[string][]caLine{}
	}
	var nNames, nameBytes, nHashed, shBytes int
	for _, e := range b.ents {
		nNames += len(e.names)
		for _, n := range e.names {
			nameBytes += len(n)
		}
		nHashed += len(e.hashed)
		for _, h := range e.hashed {
			shBytes += len(h.sh)
		}
	}
	var blobs, text strings.Builder
	blobs.Grow(b.blobBytes)
	text.Grow(nameBytes)
	ix.saltHash = make([]byte, 0, shBytes)
	ix.ents = make([]hostEntry, len(b.ents)+1)
	ix.nameSeq = make([]int32, 0, nNames)
	ix.hashed = make([]hashedLine, 0, nHashed)
	for i, e := range b.ents {
		ix.ents[i] = hostEntry{blob: int32(blobs.Len()), names: int32(len(ix.nameSeq)), hashed: int32(len(ix.hashed))}
		blobs.WriteString(e.blob)
		for _, n := range e.names {
			text.WriteString(n)
		}
		ix.nameSeq = append(ix.nameSeq, e.seqs...)
		for _, h := range e.hashed {
			if len(h.negs) > 0 {
				if ix.negs == nil {
					ix.negs = map[int32][]string{}
				}
				ix.negs[int32(len(ix.hashed))] = h.negs
			}
			ix.hashed = append(ix.hashed, hashedLine{off: int32(len(ix.saltHash)), saltLen: int32(len(h.salt())), seq: h.seq})
			ix.saltHash = append(ix.saltHash, h.sh...)
		}
		if len(e.wild) > 0 || e.revoked != "" {
			if ix.extra == nil {
				ix.extra = map[int32]*entryExtra{}
			}
			ix.extra[int32(i)] = &entryExtra{wild: e.wild, revoked: e.revoked}
		}
	}
	ix.ents[len(b.ents)] = hostEntry{blob: int32(blobs.Len()), names: int32(len(ix.nameSeq)), hashed: int32(len(ix.hashed))}
	ix.blobs = blobs.String()
	names, off := text.String(), 0
	ix.names = make([]string, 0, nNames)
	for _, e := range b.ents {
		for _, n := range e.names {
			ix.names = append(ix.names, names[off:off+len(n)])
			off += len(n)
		}
	}
	// At most two thirds full, so probes stay short.
	size := 4
	for size < len(b.ents)+len(b.ents)/2+1 {
		size *= 2
	}
	ix.slots = make([]int32, size)
	for i := range int32(len(b.ents)) {
		s := ix.mask(maphash.String(ix.seed, ix.blob(i)))
		for ix.slots[s] != 0 {
			s = (s + 1) & (len(ix.slots) - 1)
		}
		ix.slots[s] = i + 1
	}
	return ix
}

func (ix *hostIndex) mask(h uint64) int { return int(h & uint64(len(ix.slots)-1)) }

// lookup finds the entry of a marshaled key.
func (ix *hostIndex) lookup(kb []byte) (int32, bool) {
	for s := ix.mask(maphash.Bytes(ix.seed, kb)); ix.slots[s] != 0; s = (s + 1) & (len(ix.slots) - 1) {
		if i := ix.slots[s] - 1; ix.blob(i) == string(kb) {
			return i, true
		}
	}
	return 0, false
}

func (ix *hostIndex) count() int { return len(ix.ents) - 1 }

func (ix *hostIndex) blob(i int32) string {
	return ix.blobs[ix.ents[i].blob:ix.ents[i+1].blob]
}

func (ix *hostIndex) plainNames(i int32) ([]string, []int32) {
	a, z := ix.ents[i].names, ix.ents[i+1].names
	return ix.names[a:z:z], ix.nameSeq[a:z:z]
}

// hashedOf is the range of ix.hashed that holds entry i's hashed hosts.
func (ix *hostIndex) hashedOf(i int32) (from, to int32) {
	return ix.ents[i].hashed, ix.ents[i+1].hashed
}

// hashedName is hashed host k's salt and hash.
func (ix *hostIndex) hashedName(k int32) hashedName {
	h := ix.hashed[k]
	end := h.off + h.saltLen + sha1.Size
	return hashedName{sh: ix.saltHash[h.off:end:end]}
}

func (ix *hostIndex) extraOf(i int32) entryExtra {
	if e := ix.extra[i]; e != nil {
		return *e
	}
	return entryExtra{}
}

// key is entry i's host key.
func (ix *hostIndex) key(i int32) (ssh.PublicKey, error) {
	return ssh.ParsePublicKey([]byte(ix.blob(i)))
}

// namesOf is entry i's names: its literal names and the policy's names its
// hashed lines match, in file order, as if all were read at load. The
// callers must not modify the slice.
func (ix *hostIndex) namesOf(i int32) []string {
	plain, seqs := ix.plainNames(i)
	from, to := ix.hashedOf(i)
	if from == to || len(ix.policyNames) == 0 {
		return plain
	}
	ix.mu.RLock()
	names, ok := ix.memo[i]
	ix.mu.RUnlock()
	if ok {
		return names
	}
	names = make([]string, 0, len(plain)+1)
	add := func(n string) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	j := 0
	for k := from; k < to; k++ {
		// A line's literal names come before its hashed ones.
		for ; j < len(plain) && seqs[j] <= ix.hashed[k].seq; j++ {
			add(plain[j])
		}
		h := ix.hashedName(k)
		f := newHashFn(h.salt())
		for _, n := range ix.policyNames {
			if h.matchesWith(f, n) && !negatedBy(ix.negs[k], n) {
				add(n)
			}
		}
	}
	for ; j < len(plain); j++ {
		add(plain[j])
	}
	names = slices.Clip(names)
	ix.mu.Lock()
	if prev, ok := ix.memo[i]; ok {
		names = prev
	} else {
		if ix.memo == nil {
			ix.memo = map[int32][]string{}
		}
		ix.memo[i] = names
	}
	ix.mu.Unlock()
	return names
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
	return hashedName{sh: append(salt, hash...)}, nil
}

// fingerprintOf is ssh.FingerprintSHA256 of a key already marshaled.
func fingerprintOf(blob []byte) string {
	sum := sha256.Sum256(blob)
	const prefix = "SHA256:"
	var buf [len(prefix) + 43]byte // 43: 32 bytes in unpadded base64
	copy(buf[:], prefix)
	base64.RawStdEncoding.Encode(buf[len(prefix):], sum[:])
	return string(buf[:])
}

// hop is one resolved hop: everything Decide needs about a host key.
type hop struct {
	names []string
	wild  []wildName
	// fps are the key's fingerprint and, for a certificate, the certified
	// key's and the CA's; read them with fingerprints. A plain key's is
	// worked out from blob only when a decision needs it.
	fps     []string
	blob    []byte
	revoked string // why the key is revoked, or ""
	fwd     bool
	note    string // e.g. why a certificate gave no names
}

// fingerprints is h.fps, filled in on first use.
func (h *hop) fingerprints() []string {
	if h.fps == nil && h.blob != nil {
		h.fps = []string{fingerprintOf(h.blob)}
	}
	return h.fps
}

func (h *hop) named() bool { return len(h.names) > 0 || len(h.wild) > 0 }

// label is how reasons name the host.
func (h *hop) label() string {
	switch {
	case len(h.names) > 0:
		return h.names[0]
	case len(h.wild) > 0:
		return fmt.Sprintf("a host matching %q", h.wild[0].pat)
	case len(h.fingerprints()) > 0:
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
		out.blob = kb
		if i, ok := ix.lookup(kb); ok {
			x := ix.extraOf(i)
			if x.revoked != "" {
				out.revoked = "the host key " + out.fingerprints()[0] + " is marked @revoked in " + x.revoked
				return out
			}
			out.names, out.wild = ix.namesOf(i), x.wild
		}
		return out
	}

	out.fps = []string{ssh.FingerprintSHA256(cert.Key), ssh.FingerprintSHA256(cert.SignatureKey), ssh.FingerprintSHA256(cert)}
	for _, k := range []ssh.PublicKey{cert, cert.Key, cert.SignatureKey} {
		if i, ok := ix.lookup(k.Marshal()); ok {
			if r := ix.extraOf(i).revoked; r != "" {
				out.revoked = "the host key " + ssh.FingerprintSHA256(k) + " is marked @revoked in " + r
				return out
			}
		}
	}
	// A certified host is also known by its plain key, as ssh falls back
	// to it.
	if i, ok := ix.lookup(cert.Key.Marshal()); ok {
		out.names = append(out.names, ix.namesOf(i)...)
		out.wild = append(out.wild, ix.extraOf(i).wild...)
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
		if h.matchesWith(newHashFn(h.salt()), n) {
			return true
		}
	}
	return false
}

// lookupName returns the host keys known_hosts lists for a name (plain or
// hashed) or a fingerprint. Used by `policy explain`, not by Decide, so it
// scans: first the keys the name was given to at load (literal names, and
// hashed hosts matching a name the policy mentions), in the order of the
// lines that gave it; then keys of other hashed hosts with that name,
// unless revoked.
func (ix *hostIndex) lookupName(name string) []ssh.PublicKey {
	if fp, ok := strings.CutPrefix(name, "SHA256:"); ok {
		want, err := base64.RawStdEncoding.DecodeString(fp)
		if err != nil {
			return nil
		}
		for i := range int32(ix.count()) {
			if sum := sha256.Sum256([]byte(ix.blob(i))); bytes.Equal(sum[:], want) {
				if k, err := ix.key(i); err == nil {
					return []ssh.PublicKey{k}
				}
			}
		}
		return nil
	}
	n := normalizeHostPort(strings.ToLower(name))
	type given struct{ seq, ent int32 }
	var byName []given
	for i := range int32(ix.count()) {
		names, seqs := ix.plainNames(i)
		if j := slices.Index(names, n); j >= 0 {
			byName = append(byName, given{seqs[j], i})
		}
	}
	var hashed []given // hashed hosts that are n, in file order
	policyName := slices.Contains(ix.policyNames, n)
	for i := range int32(ix.count()) {
		from, to := ix.hashedOf(i)
		for k := from; k < to; k++ {
			if h := ix.hashedName(k); !h.matchesWith(newHashFn(h.salt()), n) {
				continue
			}
			g := given{ix.hashed[k].seq, i}
			hashed = append(hashed, g)
			if policyName && !negatedBy(ix.negs[k], n) {
				byName = append(byName, g)
			}
		}
	}
	bySeq := func(a, b given) int { return cmp.Compare(a.seq, b.seq) }
	slices.SortFunc(byName, bySeq)
	slices.SortFunc(hashed, bySeq)
	var out []ssh.PublicKey
	seen := map[int32]bool{}
	add := func(i int32) {
		seen[i] = true
		if k, err := ix.key(i); err == nil {
			out = append(out, k)
		}
	}
	for _, g := range byName {
		if !seen[g.ent] {
			add(g.ent)
		}
	}
	for _, g := range hashed {
		if !seen[g.ent] && ix.extraOf(g.ent).revoked == "" {
			add(g.ent)
		}
	}
	return out
}
