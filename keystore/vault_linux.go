package keystore

import (
	"errors"

	"golang.org/x/sys/unix"
)

// adviseSecret keeps key pages out of core dumps and gives a forked child
// zeros instead of a copy of them. MADV_WIPEONFORK needs Linux 4.14; older
// kernels answer EINVAL and only lose that extra.
func adviseSecret(b []byte) error {
	if err := unix.Madvise(b, unix.MADV_DONTDUMP); err != nil {
		return err
	}
	if err := unix.Madvise(b, unix.MADV_WIPEONFORK); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}
