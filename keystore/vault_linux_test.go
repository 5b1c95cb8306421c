package keystore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/safe-agent/safe-agent/internal/hint"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	childModes["newvault"] = childNewVault
	childModes["harden"] = childHarden
}

type mapping struct {
	start, end uintptr
	perms      string
}

func readMaps(t *testing.T) []mapping {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		lo, hi, _ := strings.Cut(fields[0], "-")
		s, _ := strconv.ParseUint(lo, 16, 64)
		e, _ := strconv.ParseUint(hi, 16, 64)
		ms = append(ms, mapping{uintptr(s), uintptr(e), fields[1]})
	}
	return ms
}

func dataRange(c *chunk) (uintptr, uintptr) {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(c.data)))
	return start, start + uintptr(len(c.data))
}

func TestGuardPages(t *testing.T) {
	v := newTestVault(t)
	k, err := v.Seal(genEd25519(t))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	start, end := dataRange(v.chunks[0])
	var before, data, after *mapping
	ms := readMaps(t)
	for i := range ms {
		m := &ms[i]
		switch {
		case m.end == start:
			before = m
		case m.start == start:
			data = m
		case m.start == end:
			after = m
		}
	}
	if data == nil || data.end != end || data.perms != "rw-p" {
		t.Fatalf("key memory %x-%x is not one rw-p mapping: %+v", start, end, data)
	}
	for name, m := range map[string]*mapping{"below": before, "above": after} {
		if m == nil || m.perms != "---p" {
			t.Errorf("no PROT_NONE guard page %s the key memory: %+v", name, m)
		}
	}

	// And touching them faults: with SetPanicOnFault the fault becomes a
	// recoverable panic instead of killing the test binary.
	base := unsafe.Pointer(unsafe.SliceData(v.chunks[0].data))
	for _, p := range []unsafe.Pointer{unsafe.Add(base, -1), unsafe.Add(base, len(v.chunks[0].data))} {
		if err := touch(p); err == nil {
			t.Errorf("reading %p (guard page) did not fault", p)
		}
	}
}

func touch(p unsafe.Pointer) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fault: %v", r)
		}
	}()
	_ = *(*byte)(p)
	return nil
}

// TestKeyMemoryFlags reads the kernel's view of the key mapping: locked
// ("lo", and Locked: equal to its size), excluded from core dumps ("dd"),
// wiped in forked children ("wf").
func TestKeyMemoryFlags(t *testing.T) {
	v := newTestVault(t)
	start, end := dataRange(v.chunks[0])
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	header := fmt.Sprintf("%x-%x ", start, end)
	i := bytes.Index(smaps, []byte(header))
	if i < 0 {
		t.Fatalf("no smaps entry %q", header)
	}
	entry := string(smaps[i:])
	if j := strings.Index(entry, "VmFlags:"); j >= 0 {
		entry = entry[:j+strings.IndexByte(entry[j:], '\n')]
	}
	flags := entry[strings.Index(entry, "VmFlags:")+len("VmFlags:"):]
	for _, f := range []string{"lo", "dd", "wf"} {
		if !strings.Contains(" "+flags+" ", " "+f+" ") {
			t.Errorf("VmFlags %q lacks %q", flags, f)
		}
	}
	want := regexp.MustCompile(fmt.Sprintf(`\nLocked:\s+%d kB\n`, (end-start)>>10))
	if !want.MatchString(entry) {
		t.Errorf("smaps entry lacks %q:\n%s", want, entry)
	}
}

// runChild runs the test binary in mode as user nobody (as the current user
// when not root) and returns its combined output.
func runChild(t *testing.T, mode string, env ...string) (string, error) {
	t.Helper()
	bin, err := publicTestBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append([]string{childEnv + "=" + mode, "PATH=" + os.Getenv("PATH")}, env...)
	cmd.SysProcAttr = asNobody()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func asNobody() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
}

// childNewVault: lower RLIMIT_MEMLOCK to CHILD_MEMLOCK bytes if set, create
// a vault, seal and use a key, and report.
func childNewVault() int {
	if s := os.Getenv("CHILD_MEMLOCK"); s != "" {
		n, _ := strconv.ParseUint(s, 10, 64)
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			fmt.Println("setrlimit:", err)
			return 1
		}
	}
	fmt.Printf("uid=%d\n", os.Getuid())
	v, err := NewVault(nil, VaultOptions{AllowUnlocked: os.Getenv("CHILD_ALLOW_UNLOCKED") == "1"})
	if err != nil {
		fmt.Printf("NewVault error: %v\nhint: %s\nis ErrMemoryLock: %v\n", err, hint.Of(err), errors.Is(err, ErrMemoryLock))
		return 0
	}
	defer v.Close()
	k, err := v.Seal(genEd25519(failer{}))
	if err != nil {
		fmt.Println("Seal error:", err)
		return 1
	}
	sig, err := k.Sign(rand.Reader, []byte("m"))
	if err != nil || k.PublicKey().Verify([]byte("m"), sig) != nil {
		fmt.Println("sign failed:", err)
		return 1
	}
	if os.Getenv("CHILD_FILL") == "1" {
		// 256 ed25519 keys fill the first 16 KiB chunk; the next needs a
		// second chunk.
		for i := 2; i <= 257; i++ {
			if _, err := v.Seal(genEd25519(failer{})); err != nil {
				fmt.Printf("Seal of key %d: %v\nis ErrMemoryLock: %v\n", i, err, errors.Is(err, ErrMemoryLock))
				break
			}
		}
	}
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(status)) {
		if strings.HasPrefix(line, "VmLck:") {
			fmt.Print(line)
		}
	}
	fmt.Printf("locked=%v\n", v.Locked())
	return 0
}

// failer lets key generators run outside a test.
type failer struct{ testing.TB }

func (failer) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

func TestMemlockLimitTooLowAsNobody(t *testing.T) {
	out, err := runChild(t, "newvault", "CHILD_MEMLOCK=8192")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if os.Geteuid() == 0 && !strings.Contains(out, "uid=65534") {
		t.Fatalf("child did not run as nobody:\n%s", out)
	}
	for _, want := range []string{
		"cannot lock memory for private keys: mlock of 16 KiB failed",
		"RLIMIT_MEMLOCK is 8 KiB (hard limit 8 KiB)",
		"`ulimit -l 8192` in the shell that starts safe-agent (above the hard limit: set memlock in /etc/security/limits.conf first)",
		"LimitMEMLOCK=8192K",
		"hint: raise it with `ulimit -l 8192`",
		"is ErrMemoryLock: true",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("NewVault's error lacks %q:\n%s", want, out)
		}
	}
}

func TestMemlockLimitReachedLater(t *testing.T) {
	out, err := runChild(t, "newvault", "CHILD_MEMLOCK=20480", "CHILD_FILL=1")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Seal of key 257: cannot lock memory for private keys: mlock of 16 KiB failed (cannot allocate memory) with 16 KiB already locked by safe-agent: RLIMIT_MEMLOCK is 20 KiB",
		"is ErrMemoryLock: true",
		"locked=true", // the keys already sealed stay locked
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestMemlockLimitTooLowAllowUnlocked(t *testing.T) {
	out, err := runChild(t, "newvault", "CHILD_MEMLOCK=8192", "CHILD_ALLOW_UNLOCKED=1")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(out, "locked=false") || !strings.Contains(out, "VmLck:\t       0 kB") {
		t.Errorf("with AllowUnlocked the vault should work unlocked:\n%s", out)
	}
}

func TestVmLckAsNobodyDefaultLimit(t *testing.T) {
	out, err := runChild(t, "newvault")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(out, "locked=true") || !strings.Contains(out, "VmLck:\t      16 kB") {
		t.Errorf("want a locked vault with VmLck 16 kB (one chunk) under the default limit:\n%s", out)
	}
}

// childHarden: optionally Harden, report, then wait for stdin to close.
func childHarden() int {
	if os.Getenv("CHILD_HARDEN") == "1" {
		if err := Harden(); err != nil {
			fmt.Println("Harden:", err)
			return 1
		}
	}
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	var core unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_CORE, &core)
	fmt.Printf("dumpable=%d err=%v core=%d/%d\nready\n", d, err, core.Cur, core.Max)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

func TestHarden(t *testing.T) {
	bin, err := publicTestBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		harden   string
		readable bool
		report   string
	}{
		{"0", true, "dumpable=1"},
		{"1", false, "dumpable=0 err=<nil> core=0/0"},
	} {
		t.Run("harden="+tc.harden, func(t *testing.T) {
			cmd := exec.Command(bin)
			cmd.Env = []string{childEnv + "=harden", "CHILD_HARDEN=" + tc.harden}
			cmd.SysProcAttr = asNobody()
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer stdin.Close()
			var report strings.Builder
			sc := bufio.NewScanner(stdout)
			for sc.Scan() && sc.Text() != "ready" {
				report.WriteString(sc.Text() + "\n")
			}
			if !strings.Contains(report.String(), tc.report) {
				t.Fatalf("child reported %q, want %q", report.String(), tc.report)
			}
			// Another process of the same user tries to read its environment.
			reader := exec.Command("cat", fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
			reader.SysProcAttr = asNobody()
			out, err := reader.CombinedOutput()
			if tc.readable && err != nil {
				t.Errorf("control: a same-user process cannot read a non-hardened child's environ: %v %s", err, out)
			}
			if !tc.readable && (err == nil || !strings.Contains(string(out), "Permission denied")) {
				t.Errorf("a same-user process read the hardened child's environ: err=%v %q", err, out)
			}
		})
	}
}
