package keystore

import (
	"errors"
	"testing"
)

// A locked keyring is ErrLocked (and ErrUnavailable); other unavailable
// keyrings are not ErrLocked.
func TestErrLocked(t *testing.T) {
	locked := translate("read index", errors.New("failed to unlock correct collection '/org/freedesktop/secrets/collection/login'"))
	if !errors.Is(locked, ErrLocked) || !errors.Is(locked, ErrUnavailable) {
		t.Errorf("locked keyring error %v: want ErrLocked and ErrUnavailable", locked)
	}
	gone := translate("read index", errors.New("The name org.freedesktop.secrets was not provided by any .service files"))
	if errors.Is(gone, ErrLocked) || !errors.Is(gone, ErrUnavailable) {
		t.Errorf("no Secret Service error %v: want ErrUnavailable, not ErrLocked", gone)
	}
}
