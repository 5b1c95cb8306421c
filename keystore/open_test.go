package keystore

import (
	"errors"
	"strings"
	"testing"
)

// Every name Open takes is listed by Names, opens the store of that name
// and is described; an unknown name is refused with the list.
func TestOpenNames(t *testing.T) {
	names := Names()
	if len(names) == 0 || names[0] != NameKeyring {
		t.Fatalf("Names() = %v: want the keyring first (the default)", names)
	}
	for _, name := range names {
		s, err := Open(name, nil)
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		if s.Name() != name {
			t.Errorf("Open(%q).Name() = %q", name, s.Name())
		}
		if About(name) == "" {
			t.Errorf("About(%q) is empty", name)
		}
	}
	_, err := Open("vault", nil)
	if !errors.Is(err, ErrUnknownStore) {
		t.Fatalf("Open(vault) = %v: want ErrUnknownStore", err)
	}
	if want := `unknown keystore "vault": use keyring or none`; err.Error() != want {
		t.Errorf("Open(vault) error %q, want %q", err, want)
	}
	if strings.Contains(err.Error(), "--") {
		t.Errorf("a library error names a CLI flag: %q", err)
	}
}
