package keystore

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Backend names, as Open takes them.
const (
	NameKeyring = "keyring" // the OS keyring (Secret Service, Keychain)
	NameNone    = "none"    // nothing persists: keys live as long as the agent
)

// backends are the stores Open knows, the default first.
var backends = []struct{ name, about string }{
	{NameKeyring, "the OS keyring"},
	{NameNone, "memory only"},
}

const (
	// keyringService is the service every safe-agent keyring item is stored under.
	keyringService = "safe-agent"
	// keyringTimeout bounds each keyring call: go-keyring waits forever on
	// an unlock prompt.
	keyringTimeout = 10 * time.Second
)

// ErrUnknownStore is wrapped by Open's error for a name it does not know.
var ErrUnknownStore = errors.New("unknown keystore")

// Names lists the backends Open knows, the default first.
func Names() []string {
	n := make([]string, len(backends))
	for i, b := range backends {
		n[i] = b.name
	}
	return n
}

// About says in a few words what the backend called name keeps keys in
// ("" for a name Open does not know).
func About(name string) string {
	for _, b := range backends {
		if b.name == name {
			return b.about
		}
	}
	return ""
}

// Open returns the store called name, one of Names. log may be nil.
func Open(name string, log *slog.Logger) (Store, error) {
	switch name {
	case NameKeyring:
		return NewKeyring(keyringService, keyringTimeout, log), nil
	case NameNone:
		return NewMemory(), nil
	}
	return nil, fmt.Errorf("%w %q: use %s", ErrUnknownStore, name, strings.Join(Names(), " or "))
}
