// Command bench measures safe-agent against OpenSSH's ssh-agent on one
// machine, in one run: sign throughput and latency per key type and
// connection count, resident memory, and how fast `serve` is ready.
//
// Run it from the repository root:
//
//	go run ./test/bench                      # 3 s per cell, 1 and 8 connections
//	go run ./test/bench -duration 10s -out bench.md
//
// safe-agent runs with everything on that `serve` offers: a generated
// policy of 1,000 [[key]] rules naming a generated known_hosts of 10,000
// lines (plain and hashed), the audit log, and the fullest keystore and
// memory protection its flags allow. The report says which were on.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	duration  time.Duration
	conns     []int
	keys      []string
	safeAgent string
	sshAgent  string
	out       string
	keystore  string
	memKeys   int
	starts    int
}

func main() {
	var cfg config
	var conns, keys string
	flag.DurationVar(&cfg.duration, "duration", 3*time.Second, "measuring time per agent × key type × connection count")
	flag.StringVar(&conns, "conns", "1,8", "comma-separated numbers of concurrent connections")
	flag.StringVar(&keys, "keys", "ed25519,ecdsa-p256,rsa-3072", "comma-separated key types: ed25519, ecdsa-p256, rsa-3072")
	flag.StringVar(&cfg.safeAgent, "safe-agent", "", "safe-agent binary (default: build ./cmd/safe-agent into a temp dir)")
	flag.StringVar(&cfg.sshAgent, "ssh-agent", "ssh-agent", "OpenSSH ssh-agent binary")
	flag.StringVar(&cfg.out, "out", "", "also write the report (markdown) to this file")
	flag.StringVar(&cfg.keystore, "keystore", "auto", "safe-agent --keystore: auto (keyring when a session bus is set, else none), none, keyring")
	flag.IntVar(&cfg.memKeys, "mem-keys", 100, "ed25519 keys loaded for the memory figure")
	flag.IntVar(&cfg.starts, "starts", 10, "starts of `serve` for the socket-ready median")
	flag.Parse()
	var err error
	if cfg.conns, err = parseInts(conns); err != nil {
		fatal(fmt.Errorf("-conns: %w", err))
	}
	cfg.keys = strings.Split(keys, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// report collects the output: printed as it goes, and kept for -out.
type report struct {
	w   io.Writer
	buf strings.Builder
}

func (r *report) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	io.WriteString(r.w, s)
	r.buf.WriteString(s)
}

func run(ctx context.Context, cfg config, stdout io.Writer) error {
	if _, err := exec.LookPath(cfg.sshAgent); err != nil {
		return fmt.Errorf("OpenSSH's ssh-agent not found (%w): install the Debian package openssh-client or pass -ssh-agent PATH", err)
	}
	dir, err := os.MkdirTemp("", "sa-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.safeAgent == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/safe-agent ...")
		if cfg.safeAgent, err = buildSafeAgent(dir); err != nil {
			return err
		}
	}
	prot, err := detectProtections(cfg.safeAgent, cfg.keystore)
	if err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "generating keys, policy and known_hosts ...")
	var keys []*benchKey
	for _, name := range cfg.keys {
		k, err := newBenchKey(strings.TrimSpace(name))
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	khPath := filepath.Join(dir, "known_hosts")
	plain, hashed, err := writeKnownHosts(khPath, knownHostsLines)
	if err != nil {
		return err
	}
	policyPath := filepath.Join(dir, "policy.toml")
	if err := writePolicy(policyPath, khPath, keys); err != nil {
		return err
	}

	rep := &report{w: stdout}
	rep.printf("# safe-agent vs OpenSSH ssh-agent\n\n")
	rep.printf("- machine: %s, %d CPUs (%s), %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), cpuModel(), commandOutput("uname", "-r"))
	sshPath, _ := exec.LookPath(cfg.sshAgent)
	rep.printf("- ssh-agent: %s (%s); bench client built with %s\n", sshPath, firstLine(commandOutput("ssh", "-V")), runtime.Version())
	rep.printf("- %s per cell, 64-byte data, one goroutine per connection doing sequential x/crypto agent Sign calls (RSA: rsa-sha2-512); the bench client shares the CPUs with the agent it measures\n", cfg.duration)

	// Both agents, side by side.
	sshSock := filepath.Join(dir, "ssh-agent.sock")
	sshAg, err := startProc("ssh-agent", exec.Command(cfg.sshAgent, "-D", "-a", sshSock), sshSock, filepath.Join(dir, "ssh-agent.log"), 10*time.Second)
	if err != nil {
		return err
	}
	defer sshAg.stop()
	saDir := filepath.Join(dir, "sa")
	saSock := filepath.Join(saDir, "run", "agent.sock")
	auditLog := filepath.Join(saDir, "state", "audit.jsonl")
	sa := exec.Command(cfg.safeAgent, prot.serveArgs(saSock, auditLog, policyPath)...)
	sa.Env = safeAgentEnv(saDir, prot.keystore == "keyring")
	saAg, err := startProc("safe-agent", sa, saSock, filepath.Join(dir, "safe-agent.log"), 60*time.Second)
	if err != nil {
		return err
	}
	defer saAg.stop()
	for _, p := range []*agentProc{sshAg, saAg} {
		if err := addKeys(p.socket, keys); err != nil {
			return fmt.Errorf("%s: %w\n%s", p.name, err, p.logTail(10))
		}
	}

	rep.printf("- safe-agent command: `safe-agent %s`\n", strings.Join(prot.serveArgs("SOCK", "AUDIT", "policy.toml"), " "))
	rep.printf("- safe-agent protections:\n")
	rep.printf("  - policy: %d [[key]] rules with allow lists; bench keys matched by fingerprint (last rules), confirm = \"never\"\n", policyRules)
	rep.printf("  - known_hosts: %d lines (%d plain, %d hashed |1|) named in the policy\n", plain+hashed, plain, hashed)
	rep.printf("  - audit log: on (one hash-chained record per signature)\n")
	switch prot.keystore {
	case "":
		rep.printf("  - keystore: serve has no --keystore flag\n")
	default:
		rep.printf("  - keystore: --keystore %s (%s)\n", prot.keystore, prot.keystoreWhy)
	}
	lck, _ := procStatus(saAg.pid(), "VmLck")
	switch {
	case lck > 0:
		rep.printf("  - locked memory: on (VmLck %d kB with %d keys loaded)\n", lck, len(keys))
	case prot.lockedRequired:
		rep.printf("  - locked memory: serve claims it (has --allow-unlocked-memory, not passed) but VmLck is 0 kB: keys are NOT in locked memory\n")
	default:
		rep.printf("  - locked memory: off (VmLck 0 kB; serve has no locked-memory option)\n")
	}
	if len(prot.extraFlags) > 0 {
		rep.printf("  - extra hardening flags: %s\n", strings.Join(prot.extraFlags, " "))
	}

	// Throughput and latency.
	fmt.Fprintln(os.Stderr, "measuring ...")
	var cells []cell
	ratio := map[string]float64{}
	for _, k := range keys {
		for _, n := range cfg.conns {
			var pair [2]cell
			for i, p := range []*agentProc{sshAg, saAg} {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c, err := drive(p.name, p.socket, k, n, cfg.duration)
				if err != nil {
					return fmt.Errorf("%w\n%s", err, p.logTail(10))
				}
				pair[i] = c
				fmt.Fprintf(os.Stderr, "  %-10s %-10s %2d conns: %8.0f ops/s\n", k.name, p.name, n, c.opsPerSec())
			}
			cells = append(cells, pair[:]...)
			ratio[cellKey(k.name, n)] = pair[1].opsPerSec() / pair[0].opsPerSec()
		}
	}
	rep.printf("\n| key | conns | agent | ops/s | p50 | p99 | safe-agent / ssh-agent |\n")
	rep.printf("|---|---:|---|---:|---:|---:|---:|\n")
	for _, c := range cells {
		r := ""
		if c.agent == "safe-agent" {
			r = fmt.Sprintf("%.2f×", ratio[cellKey(c.key, c.conns)])
		}
		rep.printf("| %s | %d | %s | %.0f | %s | %s | %s |\n", c.key, c.conns, c.agent, c.opsPerSec(), fmtDur(c.p50), fmtDur(c.p99), r)
	}
	audited := countLines(auditLog + "*")
	rep.printf("\nsafe-agent audit log after the run: %d records\n", audited)

	// Memory.
	rep.printf("\n## Resident memory (VmRSS)\n\n")
	for _, p := range []*agentProc{sshAg, saAg} {
		rss, err := procStatus(p.pid(), "VmRSS")
		if err != nil {
			return err
		}
		rep.printf("- %s after the run (%d keys): %s\n", p.name, len(keys), fmtKB(rss))
	}
	sshAg.stop()
	saAg.stop()
	memRSS, sshMemRSS, err := memoryWithKeys(cfg, prot, dir, policyPath)
	if err != nil {
		return err
	}
	bareRSS, _, err := memoryWithKeys(cfg, prot, dir, "")
	if err != nil {
		return err
	}
	rep.printf("- safe-agent with %d ed25519 keys loaded (each used once, bench policy): %s\n", cfg.memKeys, fmtKB(memRSS))
	rep.printf("- safe-agent with %d ed25519 keys loaded (each used once, no policy file): %s\n", cfg.memKeys, fmtKB(bareRSS))
	rep.printf("- ssh-agent with %d ed25519 keys loaded (each used once): %s\n", cfg.memKeys, fmtKB(sshMemRSS))

	// Socket ready.
	rep.printf("\n## Socket ready (exec of `serve` → first list request answered), median of %d starts\n\n", cfg.starts)
	bare, err := readyTimes(ctx, cfg, prot, dir, "")
	if err != nil {
		return err
	}
	withPolicy, err := readyTimes(ctx, cfg, prot, dir, policyPath)
	if err != nil {
		return err
	}
	rep.printf("- `serve --keystore none`, no policy file: median %s (min %s, max %s)\n", fmtDur(median(bare)), fmtDur(slices.Min(bare)), fmtDur(slices.Max(bare)))
	rep.printf("- `serve --keystore none --policy` (1,000 rules, 10,000-line known_hosts): median %s (min %s, max %s)\n", fmtDur(median(withPolicy)), fmtDur(slices.Min(withPolicy)), fmtDur(slices.Max(withPolicy)))

	// Targets.
	rep.printf("\n## Targets\n\n| target | measured | |\n|---|---:|---|\n")
	target := func(name string, ok bool, measured string) {
		verdict := "MISS"
		if ok {
			verdict = "PASS"
		}
		rep.printf("| %s | %s | %s |\n", name, measured, verdict)
	}
	for _, t := range []struct {
		conns int
		want  float64
	}{{1, 4}, {8, 8}} {
		r, ok := ratio[cellKey("ed25519", t.conns)]
		if !ok {
			rep.printf("| ed25519 ≥ %.0f× ssh-agent at %d conn | not measured (add ed25519 to -keys and %d to -conns) | |\n", t.want, t.conns, t.conns)
			continue
		}
		target(fmt.Sprintf("ed25519 ≥ %.0f× ssh-agent at %d conn", t.want, t.conns), r >= t.want, fmt.Sprintf("%.2f×", r))
	}
	target(fmt.Sprintf("RSS ≤ 16 MB with %d keys", cfg.memKeys), memRSS <= 16*1024, fmtKB(memRSS))
	target("socket ready ≤ 50 ms (`--keystore none`)", median(bare) <= 50*time.Millisecond, fmtDur(median(bare)))
	target("socket ready ≤ 50 ms with the bench policy", median(withPolicy) <= 50*time.Millisecond, fmtDur(median(withPolicy)))

	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep.buf.String()), 0o644); err != nil {
			return fmt.Errorf("write -out: %w", err)
		}
	}
	return nil
}

func cellKey(key string, conns int) string { return key + "/" + strconv.Itoa(conns) }

// memoryWithKeys starts fresh agents, loads n ed25519 keys into each and
// reads their RSS.
func memoryWithKeys(cfg config, prot protections, dir, policyPath string) (safeRSS, sshRSS int, err error) {
	var keys []*benchKey
	for i := range cfg.memKeys {
		k, err := newBenchKey("ed25519")
		if err != nil {
			return 0, 0, err
		}
		k.comment = fmt.Sprintf("mem-%03d", i)
		keys = append(keys, k)
	}
	mdir, err := os.MkdirTemp(dir, "mem")
	if err != nil {
		return 0, 0, err
	}
	sock := filepath.Join(mdir, "run", "agent.sock")
	sa := exec.Command(cfg.safeAgent, prot.serveArgs(sock, filepath.Join(mdir, "state", "audit.jsonl"), policyPath)...)
	sa.Env = safeAgentEnv(mdir, prot.keystore == "keyring")
	p, err := startProc("safe-agent", sa, sock, filepath.Join(mdir, "safe-agent.log"), 60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	sshSock := filepath.Join(mdir, "ssh-agent.sock")
	q, err := startProc("ssh-agent", exec.Command(cfg.sshAgent, "-D", "-a", sshSock), sshSock, filepath.Join(mdir, "ssh-agent.log"), 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer q.stop()
	for _, a := range []*agentProc{p, q} {
		if err := addKeys(a.socket, keys); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", a.name, err)
		}
		if err := signOnceEach(a.socket, keys); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", a.name, err)
		}
	}
	if safeRSS, err = procStatus(p.pid(), "VmRSS"); err != nil {
		return 0, 0, err
	}
	sshRSS, err = procStatus(q.pid(), "VmRSS")
	return safeRSS, sshRSS, err
}

// readyTimes starts `serve --keystore none` cfg.starts times and measures
// exec → first answered list request.
func readyTimes(ctx context.Context, cfg config, prot protections, dir, policyPath string) ([]time.Duration, error) {
	var out []time.Duration
	for i := range cfg.starts {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sdir := filepath.Join(dir, fmt.Sprintf("ready%d", i))
		sock := filepath.Join(sdir, "run", "agent.sock")
		args := []string{"serve", "--socket", sock, "--audit-log", filepath.Join(sdir, "state", "audit.jsonl")}
		if prot.keystore != "" {
			args = append(args, "--keystore", "none")
		}
		if policyPath != "" {
			args = append(args, "--policy", policyPath)
		}
		cmd := exec.Command(cfg.safeAgent, args...)
		cmd.Env = safeAgentEnv(sdir, false)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		done := make(chan struct{})
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() { _ = cmd.Wait(); close(done) }()
		_, err := waitReady(sock, done, 30*time.Second)
		d := time.Since(start)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if err != nil {
			return nil, fmt.Errorf("safe-agent serve (start %d): %w", i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	}
}

func fmtKB(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
