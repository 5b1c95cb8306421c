package audit

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// statFreeSpace reports the space an unprivileged writer can still use on
// the file system holding dir (f_bavail: root's reserve is not ours).
func statFreeSpace(dir string) (diskSpace, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(dir, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return diskSpace{}, fmt.Errorf("statfs %s: %w", dir, err)
		}
		break
	}
	bs := uint64(st.Bsize)
	return diskSpace{free: st.Bavail * bs, total: st.Blocks * bs}, nil
}
