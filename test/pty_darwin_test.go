package test

import (
	"os"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal: the master side the test reads and
// types on, and the terminal a program gets as its controlling terminal.
// (grantpt, unlockpt and ptsname as macOS's libc does them.)
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	mfd := master.Fd()
	var name [128]byte
	for _, req := range []struct {
		op  uint
		arg uintptr
	}{
		{unix.TIOCPTYGRANT, 0},
		{unix.TIOCPTYUNLK, 0},
		{unix.TIOCPTYGNAME, uintptr(unsafe.Pointer(&name[0]))},
	} {
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, mfd, uintptr(req.op), req.arg); errno != 0 {
			master.Close()
			t.Fatalf("pseudo-terminal ioctl %#x: %v", req.op, errno)
		}
	}
	tty, err = os.OpenFile(unix.ByteSliceToString(name[:]), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	return master, tty
}

// ttyEcho reports whether the terminal echoes what is typed (off while a
// password is read).
func ttyEcho(f *os.File) (bool, error) {
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TIOCGETA)
	if err != nil {
		return false, err
	}
	return tio.Lflag&unix.ECHO != 0, nil
}
