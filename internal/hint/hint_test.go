package hint

import (
	"errors"
	"fmt"
	"testing"
)

func TestOfFindsHintThroughWrapping(t *testing.T) {
	base := errors.New("keyring locked")
	err := fmt.Errorf("load key: %w", Wrap(base, "unlock the keyring, then run safe-agent load"))
	if got := Of(err); got != "unlock the keyring, then run safe-agent load" {
		t.Fatalf("Of = %q", got)
	}
	if !errors.Is(err, base) {
		t.Fatal("wrapped error lost its cause")
	}
	if err.Error() != "load key: keyring locked" {
		t.Fatalf("message = %q: the hint must not be in the message", err.Error())
	}
	if Of(base) != "" || Wrap(nil, "x") != nil {
		t.Fatal("no hint expected")
	}
}

func TestAllListsInnerThenOuter(t *testing.T) {
	inner := Wrap(errors.New("no Secret Service"), "start gnome-keyring-daemon")
	outer := Wrap(fmt.Errorf("store key: %w", inner), "use --no-store")
	got := All(fmt.Errorf("add: %w", outer))
	if len(got) != 2 || got[0] != "start gnome-keyring-daemon" || got[1] != "use --no-store" {
		t.Fatalf("All = %q", got)
	}
	if All(errors.New("plain")) != nil {
		t.Fatal("hints from a plain error")
	}
}
