//go:build linux

// Command bench measures safe-agent against OpenSSH's ssh-agent and a
// bare x/crypto keyring agent (agent.NewKeyring served with ServeAgent: no
// policy, no audit; what the pipeline costs is measured against it) on one
// machine, in one run: sign throughput and latency per key type and
// connection count, resident memory, and how fast `serve` is ready.
//
// Run it from the repository root:
//
//	go run ./test/bench                      # 5 interleaved rounds of 2 s per agent and cell
//	go run ./test/bench -duration 10s -out bench.md
//
// safe-agent runs with everything on that `serve` offers: a generated
// policy of 1,000 [[key]] rules naming a generated known_hosts of 10,000
// lines (plain and hashed), the audit log, and the fullest keystore and
// memory protection its flags allow. The report says which were on.
//
// It is Linux-only tooling (hence the build tags): it reads processes'
// memory and the CPU model from /proc.
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
	memSigns  int
	rounds    int
	starts    int
}

func main() {
	var cfg config
	var conns, keys string
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "measuring time per agent × key type × connection count, in each round")
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved rounds per cell (the tables show medians)")
	flag.IntVar(&cfg.memSigns, "mem-signs", 100000, "signatures, spread over the -mem-keys keys, before the memory figure is read")
	flag.StringVar(&conns, "conns", "1,8", "comma-separated numbers of concurrent connections")
	flag.StringVar(&keys, "keys", "ed25519,ecdsa-p256,rsa-3072", "comma-separated key types: ed25519, ecdsa-p256, rsa-3072")
	flag.StringVar(&cfg.safeAgent, "safe-agent", "", "safe-agent binary (default: build ./cmd/safe-agent into a temp dir)")
	flag.StringVar(&cfg.sshAgent, "ssh-agent", "ssh-agent", "OpenSSH ssh-agent binary")
	flag.StringVar(&cfg.out, "out", "", "also write the report (markdown) to this file")
	flag.StringVar(&cfg.keystore, "keystore", "auto", "safe-agent --keystore: auto (keyring when a session bus is set, else none), none, keyring")
	flag.IntVar(&cfg.memKeys, "mem-keys", 100, "ed25519 keys loaded for the memory figure")
	flag.IntVar(&cfg.starts, "starts", 10, "starts of `serve` for the socket-ready median")
	bareSock := flag.String(bareFlag, "", "")
	flag.Parse()
	if *bareSock != "" {
		if err := serveBareKeyring(*bareSock); err != nil {
			fatal(err)
		}
		return
	}
	if cfg.rounds < 1 {
		fatal(fmt.Errorf("-rounds %d: must be at least 1", cfg.rounds))
	}
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
	built := "given with -safe-agent"
	if cfg.safeAgent == "" {
		built = "`" + strings.Join(buildEnv, " ") + " go build ./cmd/safe-agent` (as README's install)"
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
	rep.printf("# safe-agent vs OpenSSH ssh-agent and a bare x/crypto keyring\n\n")
	rep.printf("- machine: %s, %d CPUs (%s), %s\n", runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), cpuModel(), commandOutput("uname", "-r"))
	sshPath, _ := exec.LookPath(cfg.sshAgent)
	rep.printf("- ssh-agent: %s (%s); bench client built with %s\n", sshPath, firstLine(commandOutput("ssh", "-V")), runtime.Version())
	rep.printf("- %d interleaved rounds (ssh-agent, safe-agent, bare keyring; each round starts one agent later) of %s per agent and cell, 64-byte data, one goroutine per connection doing sequential x/crypto agent Sign calls (RSA: rsa-sha2-512); the bench client shares the CPUs with the agent it measures\n", cfg.rounds, cfg.duration)
	rep.printf("- bare keyring: golang.org/x/crypto/ssh/agent NewKeyring served with ServeAgent on a unix socket (this binary, -%s): no policy, no audit\n", bareFlag)

	// The three agents, side by side.
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
	bareAg, err := startBareKeyring(dir, "bare")
	if err != nil {
		return err
	}
	defer bareAg.stop()
	agents := [agentCount]*agentProc{agentSSH: sshAg, agentSafe: saAg, agentBare: bareAg}
	for _, p := range agents {
		if err := addKeys(p.socket, keys); err != nil {
			return fmt.Errorf("%s: %w\n%s", p.name, err, p.logTail(10))
		}
	}

	rep.printf("- safe-agent binary: %s\n", built)
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
	var cells []cellRuns
	for _, k := range keys {
		for _, n := range cfg.conns {
			cr, err := measureCell(ctx, agents, k, n, cfg.rounds, cfg.duration)
			if err != nil {
				return err
			}
			cells = append(cells, cr)
		}
	}
	printCells(rep, cells)
	audited := countLines(auditLog + "*")
	rep.printf("\nsafe-agent audit log after the run: %d records\n", audited)

	// Memory.
	rep.printf("\n## Resident memory (VmRSS)\n\n")
	for _, p := range agents {
		rss, err := procStatus(p.pid(), "VmRSS")
		if err != nil {
			return err
		}
		rep.printf("- %s after the run (%d keys): %s\n", p.name, len(keys), fmtKB(rss))
	}
	for _, p := range agents {
		p.stop()
	}
	fmt.Fprintf(os.Stderr, "memory: %d keys, %d signatures ...\n", cfg.memKeys, cfg.memSigns)
	mem, err := memoryFigures(cfg, prot, dir, policyPath)
	if err != nil {
		return err
	}
	rep.printf("- safe-agent with %d ed25519 keys loaded, after %d signatures spread over them (bench policy): %s\n", cfg.memKeys, cfg.memSigns, mem.safe)
	rep.printf("- bare keyring with %d ed25519 keys loaded, after %d signatures spread over them: %s\n", cfg.memKeys, cfg.memSigns, mem.bare)
	rep.printf("- safe-agent with %d ed25519 keys loaded (each used once, no policy file): %s\n", cfg.memKeys, mem.safeNoPolicy)
	rep.printf("- ssh-agent with %d ed25519 keys loaded (each used once): %s\n", cfg.memKeys, mem.ssh)

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
	ratioOf := func(conns, against int) (float64, bool) {
		for _, cr := range cells {
			if cr.key == "ed25519" && cr.conns == conns {
				return medianF(cr.ratios(against)), true
			}
		}
		return 0, false
	}
	for _, t := range []struct {
		conns, against int
		want           float64
		name           string
	}{{1, agentBare, 0.95, "bare keyring"}, {1, agentSSH, 4, "ssh-agent"}, {8, agentSSH, 8, "ssh-agent"}} {
		name := fmt.Sprintf("ed25519 ≥ %.2g× %s at %d conn", t.want, t.name, t.conns)
		r, ok := ratioOf(t.conns, t.against)
		if !ok {
			rep.printf("| %s | not measured (add ed25519 to -keys and %d to -conns) | |\n", name, t.conns)
			continue
		}
		target(name, r >= t.want, fmt.Sprintf("%.2f×", r))
	}
	target(fmt.Sprintf("RSS ≤ 16 MB with %d keys after %d signatures", cfg.memKeys, cfg.memSigns), mem.safe.vm <= 16*1024, mem.safe.String())
	target("socket ready ≤ 50 ms (`--keystore none`)", median(bare) <= 50*time.Millisecond, fmtDur(median(bare)))
	target("socket ready ≤ 50 ms with the bench policy", median(withPolicy) <= 50*time.Millisecond, fmtDur(median(withPolicy)))

	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep.buf.String()), 0o644); err != nil {
			return fmt.Errorf("write -out: %w", err)
		}
	}
	return nil
}

// memFigures are the RSS figures, in kB.
type memFigures struct{ safe, bare, safeNoPolicy, ssh rssFigure }

// rssFigure is a process's VmRSS and the part of it that is its own
// (RssAnon): the rest is file pages, mostly the binary's code and
// read-only data, shared with the page cache and reclaimable.
type rssFigure struct{ vm, anon int }

func (r rssFigure) String() string {
	return fmt.Sprintf("%s (anonymous %s, file-backed %s)", fmtKB(r.vm), fmtKB(r.anon), fmtKB(r.vm-r.anon))
}

// memoryFigures starts fresh agents, one at a time, loads cfg.memKeys
// ed25519 keys into each and reads their RSS: safe-agent (bench policy)
// and the bare keyring after cfg.memSigns signatures spread over the
// keys; safe-agent without a policy and ssh-agent after one signature
// per key.
func memoryFigures(cfg config, prot protections, dir, policyPath string) (memFigures, error) {
	var keys []*benchKey
	for i := range cfg.memKeys {
		k, err := newBenchKey("ed25519")
		if err != nil {
			return memFigures{}, err
		}
		k.comment = fmt.Sprintf("mem-%03d", i)
		keys = append(keys, k)
	}
	var m memFigures
	for _, f := range []struct {
		out   *rssFigure
		start func(mdir string) (*agentProc, error)
		signs int
	}{
		{&m.safe, func(mdir string) (*agentProc, error) { return startSafeAgent(cfg, prot, mdir, policyPath) }, cfg.memSigns},
		{&m.bare, func(mdir string) (*agentProc, error) { return startBareKeyring(mdir, "bare") }, cfg.memSigns},
		{&m.safeNoPolicy, func(mdir string) (*agentProc, error) { return startSafeAgent(cfg, prot, mdir, "") }, len(keys)},
		{&m.ssh, func(mdir string) (*agentProc, error) {
			sock := filepath.Join(mdir, "ssh-agent.sock")
			return startProc("ssh-agent", exec.Command(cfg.sshAgent, "-D", "-a", sock), sock, filepath.Join(mdir, "ssh-agent.log"), 10*time.Second)
		}, len(keys)},
	} {
		mdir, err := os.MkdirTemp(dir, "mem")
		if err != nil {
			return m, err
		}
		p, err := f.start(mdir)
		if err != nil {
			return m, err
		}
		rss, err := rssAfterSigning(p, keys, f.signs)
		p.stop()
		if err != nil {
			return m, err
		}
		*f.out = rss
	}
	return m, nil
}

// startSafeAgent starts `safe-agent serve` with its state in mdir.
func startSafeAgent(cfg config, prot protections, mdir, policyPath string) (*agentProc, error) {
	sock := filepath.Join(mdir, "run", "agent.sock")
	sa := exec.Command(cfg.safeAgent, prot.serveArgs(sock, filepath.Join(mdir, "state", "audit.jsonl"), policyPath)...)
	sa.Env = safeAgentEnv(mdir, prot.keystore == "keyring")
	return startProc("safe-agent", sa, sock, filepath.Join(mdir, "safe-agent.log"), 60*time.Second)
}

// rssAfterSigning loads keys into p, signs signs times spread over them
// and reads p's RSS.
func rssAfterSigning(p *agentProc, keys []*benchKey, signs int) (rssFigure, error) {
	if err := addKeys(p.socket, keys); err != nil {
		return rssFigure{}, fmt.Errorf("%s: %w", p.name, err)
	}
	if err := signSpread(p.socket, keys, signs); err != nil {
		return rssFigure{}, fmt.Errorf("%s: %w", p.name, err)
	}
	vm, err := procStatus(p.pid(), "VmRSS")
	if err != nil {
		return rssFigure{}, err
	}
	anon, err := procStatus(p.pid(), "RssAnon")
	return rssFigure{vm: vm, anon: anon}, err
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
