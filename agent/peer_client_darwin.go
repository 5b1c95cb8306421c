package agent

import (
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

// readClient reads pid's chain with sysctl kern.proc.pid: each process's
// name (p_comm, from the file it executed, not argv[0]). macOS shows no
// executable path this way, no systemd unit and no cgroup, so only name
// patterns can match here. The start time is read before and after.
func readClient(pid int) (*policy.Client, uint64) {
	first, ok := procStart(pid)
	if !ok {
		return &policy.Client{Unreadable: "process gone"}, 0
	}
	c := &policy.Client{}
	for i, next := 0, pid; i < clientDepth && next > 1; i++ {
		kp, err := unix.SysctlKinfoProc("kern.proc.pid", next)
		if err != nil {
			break
		}
		c.Chain = append(c.Chain, policy.Proc{PID: next, Name: unix.ByteSliceToString(kp.Proc.P_comm[:])})
		next = int(kp.Eproc.Ppid)
	}
	if again, ok := procStart(pid); !ok || again != first || len(c.Chain) == 0 {
		return &policy.Client{Unreadable: "process gone"}, 0
	}
	return c, first
}

func procStart(pid int) (uint64, bool) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || kp.Proc.P_starttime.Sec == 0 {
		return 0, false
	}
	t := kp.Proc.P_starttime
	return uint64(t.Sec)*1_000_000 + uint64(t.Usec), true
}

// peerChanged says why the connection's process is no longer the one
// read when it connected ("" when it still is).
func peerChanged(p *peerInfo) string {
	if p.Client == nil || p.Client.Unreadable != "" {
		return ""
	}
	if s, ok := procStart(p.PID); !ok || s != p.start {
		return "process gone"
	}
	return ""
}

// ReadClient reads the process chain of pid as the agent reads a
// connecting process's, for `policy explain --client-pid`.
func ReadClient(pid int) *policy.Client {
	c, _ := readClient(pid)
	return c
}
