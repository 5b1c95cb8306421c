package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/policy"
)

// fromStored and toStored are the one mapping between policy.Settings and
// the keystore's copy of it (keystore and policy never import each other).
// The two are the same struct, so this is a Go conversion: it stops
// compiling if they drift apart.
func fromStored(s keystore.Settings) policy.Settings { return policy.Settings(s) }
func toStored(s policy.Settings) keystore.Settings   { return keystore.Settings(s) }

// given reports whether the user gave flag name explicitly. Without
// cobra's answer (a caller that built addFlags itself) every flag counts
// as given: the settings are exactly those in f.
func (f addFlags) given(name string) bool {
	return f.changed == nil || f.changed(name)
}

// previousKey is what a key had before this `add`: the settings it is
// stored with or, without a keystore, those it is loaded with.
type previousKey struct {
	settings policy.Settings
	comment  string
	added    time.Time
	where    string // "stored", "loaded"
}

// findPrevious looks the key up where its settings live: the keystore
// when `add` writes there, else the running agent. A keystore that
// cannot be read is an error: adding anyway would overwrite settings
// nobody has seen.
func findPrevious(ctx context.Context, store keystore.Store, loaded map[string]agent.KeyInfo, fp string) (*previousKey, error) {
	if store != nil && store.Name() != keystore.NameNone {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sk, err := store.Get(gctx, fp)
		cancel()
		if errors.Is(err, keystore.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		clear(sk.PrivateKeyPEM)
		return &previousKey{settings: fromStored(sk.Settings), comment: sk.Comment, added: sk.Added, where: "stored"}, nil
	}
	ki, ok := loaded[fp]
	if !ok {
		return nil, nil
	}
	s := ki.Settings()
	if !ki.Expires.IsZero() {
		s.Lifetime = max(time.Until(ki.Expires).Round(time.Second), time.Second)
	}
	return &previousKey{settings: s, comment: ki.Comment, where: "loaded"}, nil
}

// loadedKeys maps the fingerprints of the plain keys the agent holds to
// what it says about them (nil without an agent, or when it cannot list).
func loadedKeys(ag sshagent.ExtendedAgent) map[string]agent.KeyInfo {
	if ag == nil {
		return nil
	}
	var infos []agent.KeyInfo
	if err := agentJSON(ag, agent.ExtList, &infos); err != nil {
		return nil
	}
	out := make(map[string]agent.KeyInfo, len(infos))
	for _, ki := range infos {
		if !ki.Certificate {
			out[ki.Fingerprint] = ki
		}
	}
	return out
}

// mergeSettings keeps each of old's settings unless its flag was given. An
// empty --allow "" or --deny "" clears that list.
func mergeSettings(old, given policy.Settings, f addFlags) policy.Settings {
	s := old
	if f.given("confirm") {
		s.Confirm = given.Confirm
	}
	if f.given("allow") {
		s.Allow = nonEmpty(given.Allow)
	}
	if f.given("deny") {
		s.Deny = nonEmpty(given.Deny)
	}
	if f.given("max-forward-depth") {
		s.MaxForwardDepth = given.MaxForwardDepth
	}
	if f.given("lifetime") {
		s.Lifetime = given.Lifetime
	}
	return s
}

func nonEmpty(list []string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return strings.TrimSpace(s) == "" })
}

// settingsChanges lists each changed setting as "name old → new".
func settingsChanges(old, now policy.Settings, oldComment, comment string) []string {
	var out []string
	add := func(name, a, b string) {
		if a != b {
			out = append(out, name+" "+a+" → "+b)
		}
	}
	add("confirm", yesNo(old.Confirm), yesNo(now.Confirm))
	add("allow", listText(old.Allow), listText(now.Allow))
	add("deny", listText(old.Deny), listText(now.Deny))
	add("max forward depth", depthText(old.MaxForwardDepth), depthText(now.MaxForwardDepth))
	add("lifetime", lifetimeText(old.Lifetime), lifetimeText(now.Lifetime))
	if oldComment != "" {
		add("comment", strconv.Quote(oldComment), strconv.Quote(comment))
	}
	return out
}

func listText(l []string) string { return "[" + strings.Join(l, ", ") + "]" }

func depthText(d *int) string {
	if d == nil {
		return "(policy)"
	}
	return strconv.Itoa(*d)
}

// lifetimeText is "none" or a duration without trailing zero units: 8h, 90m.
func lifetimeText(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// printSettings says what the key's settings are now: new ones as before,
// and for a key that was already stored (or loaded), what changed, or that
// its settings were kept.
func printSettings(w io.Writer, prev *previousKey, s policy.Settings, comment string) {
	text := settingsText(s.Confirm, s.Allow, s.Deny, s.MaxForwardDepth, s.Lifetime)
	if prev == nil {
		if text != "" {
			fmt.Fprintf(w, "  %s\n", termtext.Escape(text))
		}
		return
	}
	if ch := settingsChanges(prev.settings, s, prev.comment, comment); len(ch) > 0 {
		fmt.Fprintf(w, "  settings: %s\n", termtext.Escape(strings.Join(ch, "; ")))
		return
	}
	if text == "" {
		text = "none"
	}
	fmt.Fprintf(w, "  settings kept (it was already %s with them): %s\n", prev.where, termtext.Escape(text))
}

// printAddSummary ends an `add` of several keys in which some failed:
// which keys were changed and which were not.
func printAddSummary(w io.Writer, failed int, changed, unchanged []string) {
	if len(changed)+len(unchanged) < 2 {
		return
	}
	e := func(l []string) string {
		if len(l) == 0 {
			return "none"
		}
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = termtext.Escape(s)
		}
		return strings.Join(q, ", ")
	}
	fmt.Fprintf(w, "safe-agent add: %d of %d failed (see above). Changed: %s. Not changed: %s.\n",
		failed, len(changed)+len(unchanged), e(changed), e(unchanged))
}

// publicFingerprint is the SHA256 fingerprint of a parsed private key.
func publicFingerprint(priv any) (string, error) {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", fmt.Errorf("fingerprint key: %w", err)
	}
	return ssh.FingerprintSHA256(s.PublicKey()), nil
}
