package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/policy"
)

// agentKeys is what `policy explain` and `policy check` learn from the
// running agent: its status (policy file, keystore) and the keys it holds
// or could load from its keystore, with the settings stored with them.
type agentKeys struct {
	socket string
	// status is nil when no safe-agent answered (or it is locked): the
	// commands then work from the policy file alone, as without an agent.
	status *agent.Status
	keys   []listedKey
	notes  []string
}

// loadAgentKeys asks the agent on socket for its keys, and reads the
// keystore the agent itself uses (a --keystore none agent has none).
func loadAgentKeys(ctx context.Context, socket string) agentKeys {
	ak := agentKeys{socket: socket}
	st, err := agentStatus(socket)
	switch {
	case err != nil:
		ak.notes = append(ak.notes, fmt.Sprintf("%v: keys are taken as written, without the settings stored with them", err))
		return ak
	case st.Locked:
		ak.notes = append(ak.notes, fmt.Sprintf("the agent on %s is locked (ssh-add -X unlocks it): keys are taken as written, without the settings stored with them", socket))
		return ak
	}
	store := st.Keystore
	if store != keystore.NameKeyring {
		store = keystore.NameNone
	}
	keys, notes := collectKeys(ctx, socket, store)
	ak.status, ak.keys = &st, keys
	ak.notes = append(ak.notes, notes...)
	return ak
}

// explainTarget is one identity a request is explained for.
type explainTarget struct {
	key      policy.Key
	settings policy.Settings
	// from says where the key was found and with which settings; "" when
	// it is taken as written.
	from string
}

// policyKeyOf describes a listed key to the policy as the agent does
// (agent.policyKey, the identity's settings): a certificate with its CA and
// principals, checked by policy.CertOf, and the key's own settings.
func policyKeyOf(k listedKey) (policy.Key, policy.Settings) {
	pk := policy.Key{Fingerprint: k.Fingerprint, Comment: k.Comment, Type: k.Type}
	if k.Certificate {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey)); err == nil {
			if c, ok := pub.(*ssh.Certificate); ok {
				pk.Cert, _ = policy.CertOf(c)
			}
		}
	}
	return pk, k.Settings()
}

// where says where a key is, for people.
func (k listedKey) where() string {
	switch {
	case k.Loaded && k.InStore:
		return "loaded in the agent and stored in the keyring"
	case k.Loaded:
		return "loaded in the agent"
	}
	return "stored in the keyring (not loaded)"
}

func (k listedKey) label() string {
	s := k.Fingerprint
	if k.Comment != "" {
		s = fmt.Sprintf("%q (%s)", k.Comment, k.Fingerprint)
	}
	if k.Cert != nil {
		s += fmt.Sprintf(" with certificate %q", k.Cert.KeyID)
	}
	return s
}

func (k listedKey) fromText() string {
	return k.label() + ", " + k.whereAndSettings()
}

// whereAndSettings is "loaded in the agent; its own settings: confirm
// every use".
func (k listedKey) whereAndSettings() string {
	if set := settingsText(k.Confirm, k.Allow, k.Deny, k.MaxForwardDepth, 0); set != "" {
		return k.where() + "; its own settings: " + set
	}
	return k.where() + "; no settings of its own"
}

// resolve finds the keys --key names among the agent's: by fingerprint
// or comment. A key and the certificates loaded for it share both, so
// each is a target; two different keys are an error.
func (ak agentKeys) resolve(arg string) ([]explainTarget, error) {
	var matches []listedKey
	for _, k := range ak.keys {
		if k.Fingerprint == arg || k.Comment == arg {
			matches = append(matches, k)
		}
	}
	if len(matches) == 0 {
		return nil, ak.noMatch(arg)
	}
	var fps []string
	for _, k := range matches {
		if !slices.Contains(fps, k.Fingerprint) {
			fps = append(fps, k.Fingerprint)
		}
	}
	if len(fps) > 1 {
		return nil, fmt.Errorf("explain: --key %q names %d keys (%s): give the fingerprint", arg, len(fps), strings.Join(fps, ", "))
	}
	out := make([]explainTarget, len(matches))
	for i, k := range matches {
		pk, s := policyKeyOf(k)
		out[i] = explainTarget{key: pk, settings: s, from: k.fromText()}
	}
	return out, nil
}

func (ak agentKeys) noMatch(arg string) error {
	var names []string
	for _, k := range ak.keys {
		if k.Comment != "" && !slices.Contains(names, k.Comment) {
			names = append(names, k.Comment)
		}
	}
	msg := fmt.Sprintf("explain: no key matches %q in the agent on %s or its keystore", arg, ak.socket)
	if len(ak.keys) == 0 {
		return errors.New(msg + ": it holds no keys (add one with `safe-agent add`)")
	}
	if s := nearest(arg, names); s != "" {
		msg += fmt.Sprintf(": did you mean %s?", s)
	}
	return errors.New(msg + " (`safe-agent list` shows the keys; a key file works too: --key ~/.ssh/id_ed25519.pub)")
}

// withStored folds into a key read from a file the settings the agent
// keeps for it, when it holds or stores that key: a certificate file
// takes the loaded certificate's entry, else the plain key's.
func (ak agentKeys) withStored(k policy.Key, pub ssh.PublicKey) explainTarget {
	t := explainTarget{key: k}
	var best *listedKey
	for i := range ak.keys {
		lk := &ak.keys[i]
		if lk.Fingerprint == k.Fingerprint && (best == nil || samePublicKey(lk.PublicKey, pub)) {
			best = lk
		}
	}
	if best == nil {
		t.from = "not loaded in the agent or stored: no settings of its own"
		return t
	}
	_, t.settings = policyKeyOf(*best)
	if t.key.Comment == "" {
		t.key.Comment = best.Comment
	}
	t.from = best.fromText()
	return t
}

// samePublicKey: line (authorized_keys format) is pub.
func samePublicKey(line string, pub ssh.PublicKey) bool {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	return err == nil && bytes.Equal(k.Marshal(), pub.Marshal())
}

// unmatchedSections warns about every [[key]] match that matches none of
// the agent's keys: a typo there sends the key to [defaults] silently.
func (ak agentKeys) unmatchedSections(p *policy.Policy) []string {
	used := map[string]bool{}
	for _, k := range ak.keys {
		pk, _ := policyKeyOf(k)
		for _, m := range p.MatchingSections(pk) {
			used[m] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range p.KeyMatches() {
		if used[m] || seen[m] {
			continue
		}
		seen[m] = true
		w := fmt.Sprintf("[[key]] match %q matches no key loaded in the agent or stored, so its rules apply to none of them", m)
		if s := nearest(m, ak.candidates(m)); s != "" {
			w += fmt.Sprintf(": did you mean %s?", s)
		}
		out = append(out, w)
	}
	return out
}

// candidates are what a match could have meant to name: fingerprints for
// a fingerprint, CA fingerprints for "ca:", principals for "principal:",
// else comments.
func (ak agentKeys) candidates(match string) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, k := range ak.keys {
		switch {
		case strings.HasPrefix(match, "SHA256:"):
			add(k.Fingerprint)
		case strings.HasPrefix(match, "ca:"):
			if k.Cert != nil {
				add("ca:" + k.Cert.CAFingerprint)
			}
		case strings.HasPrefix(match, "principal:"):
			if k.Cert != nil {
				for _, p := range k.Cert.Principals {
					add("principal:" + p)
				}
			}
		default:
			add(k.Comment)
		}
	}
	return out
}

// nearest is the candidate closest to s by edit distance, when it is
// close enough to be a typo of it; "" otherwise.
func nearest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(2, len([]rune(s))/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// keySections says, for each of the agent's keys, which section of p
// governs it and with which settings of its own (`policy check`).
func (ak agentKeys) keySections(p *policy.Policy) []string {
	out := make([]string, 0, len(ak.keys))
	for _, k := range ak.keys {
		pk, _ := policyKeyOf(k)
		section := "[defaults] (no [[key]] matches it)"
		if ms := p.MatchingSections(pk); len(ms) > 0 {
			section = fmt.Sprintf("[[key]] match %q", ms[0])
		}
		out = append(out, fmt.Sprintf("%s: %s; %s", k.label(), section, k.whereAndSettings()))
	}
	return out
}
