package agent

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/safe-agent/safe-agent/policy"
)

// clientDepth is how many processes the chain for client rules holds:
// the requesting process and its parents.
const clientDepth = 8

// readPeer reads, once per connection, who the peer is: the chain shown
// to people and the structured chain client rules decide on.
func readPeer(p *peerInfo) {
	p.Chain, p.Exe = processChain(p.PID, 4)
	p.Client, p.start = readClient(p.PID)
}

// readClient reads pid's chain from the kernel: each process's name
// (comm, set from the file it executed) and executable (readlink of
// /proc/PID/exe), never argv[0]; the requesting process's cgroup, unit
// and container. The pid's start time is read before and after, so a
// process that exits (and whose pid is reused) while it is read is not
// taken for its successor.
func readClient(pid int) (*policy.Client, uint64) {
	if pid <= 0 {
		return &policy.Client{Unreadable: "the process is not visible to the agent"}, 0
	}
	first, err := readProc(pid)
	if err != nil {
		return &policy.Client{Unreadable: "process gone"}, 0
	}
	c := &policy.Client{}
	for i, next := 0, pid; i < clientDepth && next > 1; i++ {
		pi, err := readProc(next)
		if err != nil {
			break
		}
		c.Chain = append(c.Chain, policy.Proc{PID: pi.PID, Name: pi.Comm, Exe: readExe(pi.PID)})
		next = pi.PPID
	}
	c.Cgroup = readCgroup(pid)
	c.Unit = unitOf(c.Cgroup)
	c.Container = containerOf(pid, c.Cgroup)
	again, err := readProc(pid)
	switch {
	case err != nil || len(c.Chain) == 0:
		return &policy.Client{Unreadable: "process gone"}, 0
	case again.Start != first.Start:
		return &policy.Client{Unreadable: "process gone (its pid was reused while it was read)"}, 0
	}
	return c, first.Start
}

// readExe is the resolved executable of pid ("" if unreadable). A file
// replaced since it was started (a package upgrade) reads with a
// " (deleted)" suffix; the path is still the one it was started from.
func readExe(pid int) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

// readCgroup is pid's cgroup v2 path (the "0::/path" line), "" when there
// is none.
func readCgroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if path, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return path
		}
	}
	return ""
}

// unitOf is the systemd unit a cgroup path belongs to: its deepest
// element that is a .service or .scope ("" if none).
func unitOf(cgroup string) string {
	parts := strings.Split(cgroup, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if strings.HasSuffix(parts[i], ".service") || strings.HasSuffix(parts[i], ".scope") {
			return parts[i]
		}
	}
	return ""
}

// containerOf names the container pid runs in, as /proc shows it: marker
// files in its root (seen through /proc/PID/root) when that root is not
// the agent's own, or a container manager's element in its cgroup path
// that the agent's own path lacks. "" when none shows.
func containerOf(pid int, cgroup string) string {
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	if !sameFile(root, "/proc/self/root") {
		for _, m := range []struct{ file, name string }{
			{"/.flatpak-info", "flatpak"},
			{"/run/.containerenv", "podman"},
			{"/.dockerenv", "docker"},
		} {
			if _, err := os.Stat(root + m.file); err == nil {
				return m.name
			}
		}
	}
	own := readCgroup(os.Getpid())
	for _, m := range []struct{ part, name string }{
		{"docker", "docker"}, {"libpod", "podman"}, {"lxc", "lxc"}, {"/snap.", "snap"},
	} {
		if strings.Contains(cgroup, m.part) && !strings.Contains(own, m.part) {
			return m.name
		}
	}
	return ""
}

func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return true // unreadable: claim no container from files
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// peerChanged says why the connection's process is no longer the one
// read when it connected ("" when it still is): gone (its pid free or
// another process's), or running another program. A decision is made
// for the process that asked, never for its pid's next owner.
func peerChanged(p *peerInfo) string {
	if p.Client == nil || p.Client.Unreadable != "" || len(p.Client.Chain) == 0 {
		return ""
	}
	pi, err := readProc(p.PID)
	if err != nil || pi.Start != p.start {
		return "process gone"
	}
	if exe := readExe(p.PID); exe != p.Client.Chain[0].Exe {
		return "process changed: it runs another program (" + exe + ") than when it connected"
	}
	return ""
}

// ReadClient reads the process chain of pid as the agent reads a
// connecting process's, for `policy explain --client-pid`.
func ReadClient(pid int) *policy.Client {
	c, _ := readClient(pid)
	return c
}
