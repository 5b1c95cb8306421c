//go:build !linux

package audit

import "errors"

// statFreeSpace is not implemented here: free space is unknown, so
// rotation never overrides MinRetention for lack of it.
func statFreeSpace(string) (diskSpace, error) {
	return diskSpace{}, errors.New("free space is not measured on this platform")
}
