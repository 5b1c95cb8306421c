package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/keystore"
)

// serveConfig is everything `serve` (and the ssh-agent drop-in) needs.
type serveConfig struct {
	socket        string
	policyPath    string
	keystore      string
	auditPath     string
	debug         bool
	lifetime      time.Duration
	allowRoot     bool
	allowUnlocked bool
	readyFD       int  // write "ready" here once listening (ssh-agent detach)
	watchPID      int  // exit when this process is gone (ssh-agent COMMAND form)
	auditFallback bool // ssh-agent drop-in: use a per-agent log if the default one is in use
	// removeSocketDir: the ssh-agent drop-in made the socket's directory
	// (/tmp/ssh-XXXXXX); the agent removes it when it stops, as OpenSSH's.
	removeSocketDir bool
	// Connection limits, as agent.Options has them: 0 is the default,
	// negative is none.
	maxConns, maxConnsPerProcess, maxConnsPerPath int
	idleTimeout                                   time.Duration
	// upstreams: --upstream, agents whose keys safe-agent fronts.
	upstreams []string
}

// connFlags are the serve flags for connection limits, where 0 means
// "no limit" (as people write it) rather than "the default".
type connFlags struct {
	maxConns, perProcess, perPath int
	idle                          time.Duration
}

// register adds the flags; fs is cmd.Flags().
func (f *connFlags) register(fs interface {
	IntVar(p *int, name string, value int, usage string)
	DurationVar(p *time.Duration, name string, value time.Duration, usage string)
}) {
	fs.IntVar(&f.maxConns, "max-connections", agent.DefaultMaxConns,
		fmt.Sprintf("most client connections open at once; the last 1/64 (at most %d) are kept for processes with no other connection", agent.DefaultReservedConns))
	fs.IntVar(&f.perProcess, "max-connections-per-process", agent.DefaultMaxConnsPerProcess, "most connections one client process may hold (0 = no limit besides --max-connections)")
	fs.IntVar(&f.perPath, "max-connections-per-path", agent.DefaultMaxConnsPerPath, "most connections through one forwarded agent path (0 = no limit)")
	fs.DurationVar(&f.idle, "idle-timeout", agent.DefaultIdleTimeout, "close connections that sent no request for this long (0 = never)")
}

// apply puts the flags into cfg in agent.Options' terms.
func (f *connFlags) apply(cfg *serveConfig) error {
	if f.maxConns < 1 {
		return fmt.Errorf("--max-connections %d: must be at least 1", f.maxConns)
	}
	if f.perProcess < 0 || f.perPath < 0 || f.idle < 0 {
		return errors.New("--max-connections-per-process, --max-connections-per-path and --idle-timeout cannot be negative (0 means no limit)")
	}
	none := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	cfg.maxConns, cfg.maxConnsPerProcess, cfg.maxConnsPerPath = f.maxConns, none(f.perProcess), none(f.perPath)
	cfg.idleTimeout = f.idle
	if f.idle == 0 {
		cfg.idleTimeout = -1
	}
	return nil
}

func newServeCmd() *cobra.Command {
	var cfg serveConfig
	var limits connFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the agent in the foreground",
		Long: `Run the agent in the foreground. It listens on a socket in a private
(0700) directory and prints the line that points SSH_AUTH_SOCK at it.
Stop it with Ctrl-C or SIGTERM: requests in flight get their reply, the
socket is removed. SIGHUP reloads the policy file and loads again the
stored keys the agent no longer holds (after ssh-add -D).

Started by systemd from safe-agent.socket (safe-agent service install), it
serves on the socket systemd passes (LISTEN_FDS) instead of --socket, and
leaves it in place when it stops.`,
		Example: `  safe-agent serve
  safe-agent serve --socket ~/.ssh/safe-agent.sock --keystore none -d
  SSH_AUTH_SOCK=$XDG_RUNTIME_DIR/safe-agent/agent.sock ssh-add -l`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := limits.apply(&cfg); err != nil {
				return err
			}
			return runServe(cmd.Context(), cfg, cmd.OutOrStdout(), cmd.ErrOrStderr(), printShVars)
		},
	}
	f := cmd.Flags()
	limits.register(f)
	f.StringVar(&cfg.socket, "socket", "", "socket path (default $XDG_RUNTIME_DIR/safe-agent/agent.sock)")
	f.StringVar(&cfg.policyPath, "policy", "", "policy file (default $SAFE_AGENT_POLICY or $XDG_CONFIG_HOME/safe-agent/policy.toml)")
	keystoreFlag(f, &cfg.keystore, "where keys rest")
	f.StringVar(&cfg.auditPath, "audit-log", "", "audit log file (default $XDG_STATE_HOME/safe-agent/audit.jsonl)")
	f.BoolVarP(&cfg.debug, "debug", "d", false, "log every request to stderr (never key material)")
	f.DurationVar(&cfg.lifetime, "lifetime", 0, "default lifetime of added keys, e.g. 1h (0 = until removed)")
	f.BoolVar(&cfg.allowRoot, "allow-root", false, "let root (uid 0) use this agent too")
	f.BoolVar(&cfg.allowUnlocked, "allow-unlocked-memory", false, "keep running if keys cannot be held in locked memory")
	f.StringArrayVar(&cfg.upstreams, "upstream", nil, "socket of another agent (YubiKey, TPM, gpg-agent, 1Password…) whose keys are offered under this agent's policy (repeatable)")
	f.IntVar(&cfg.readyFD, "ready-fd", 0, "")
	f.IntVar(&cfg.watchPID, "watch-pid", 0, "")
	f.BoolVar(&cfg.auditFallback, "audit-fallback", false, "")
	_ = f.MarkHidden("audit-fallback")
	f.BoolVar(&cfg.removeSocketDir, "remove-socket-dir", false, "")
	_ = f.MarkHidden("remove-socket-dir")
	_ = f.MarkHidden("ready-fd")
	_ = f.MarkHidden("watch-pid")
	return cmd
}

// varPrinter prints the environment lines once the socket is ready.
type varPrinter func(w io.Writer, socket string, pid int)

func printShVars(w io.Writer, socket string, _ int) {
	fmt.Fprintf(w, "SSH_AUTH_SOCK=%s; export SSH_AUTH_SOCK;\n", shellQuote(socket))
}

// shellQuote leaves ordinary paths alone and single-quotes the rest.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@%,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func runServe(ctx context.Context, cfg serveConfig, stdout, stderr io.Writer, printVars varPrinter) (err error) {
	if ctx == nil {
		ctx = context.Background()
	}
	level := slog.LevelInfo
	if cfg.debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// As OpenSSH's agent: no core files, not dumpable, not ptrace-able by
	// other processes of the same user.
	if err := keystore.Harden(); err != nil {
		logger.Warn("could not harden the process", "err", err)
	}
	// x/crypto's agent server logs protocol errors with the standard
	// logger; our own log says what matters, with context.
	log.SetOutput(io.Discard)

	var ready *os.File
	if cfg.readyFD > 0 {
		ready = os.NewFile(uintptr(cfg.readyFD), "ready")
		defer func() {
			if err != nil {
				fmt.Fprintf(ready, "error: %v\n", err)
				for _, h := range hint.All(err) {
					fmt.Fprintf(ready, "hint: %s\n", strings.ReplaceAll(h, "\n", " "))
				}
			}
			ready.Close()
		}()
	}
	if cfg.socket == "" {
		cfg.socket = defaultSocket()
	}
	store, err := newKeystore(cfg.keystore, logger)
	if err != nil {
		return err
	}

	// Catch signals before anyone can learn our pid or socket, so a quick
	// SIGTERM still means a clean stop (socket removed).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// Socket activation: systemd (safe-agent.socket) owns the socket and
	// passes it listening; it is not ours to create or remove.
	activated, err := activationListener(os.Getenv, os.Getpid())
	if err != nil {
		return err
	}
	if activated != nil {
		defer activated.Close()
		cfg.socket = activated.Addr().String()
	}

	// Before anything else is touched (the audit log is another agent's
	// while it runs): a second agent on a live socket is the usual mistake.
	if activated == nil {
		if err := checkNotRunning(cfg.socket); err != nil {
			return err
		}
	}
	d, err := setupDaemon(ctx, cfg, store, logger)
	if err != nil {
		return err
	}
	defer d.close()

	l := activated
	how := "created"
	if l != nil {
		how = "passed by systemd (socket activation); it stays when the agent stops"
	} else if l, err = agent.Listen(cfg.socket); err != nil {
		return err
	}
	srv := d.server
	printVars(stdout, cfg.socket, os.Getpid())
	if ready != nil {
		fmt.Fprintln(ready, "ready")
		ready.Close()
		ready = nil
	}
	logger.Info("safe-agent listening", "socket", cfg.socket, "pid", os.Getpid(), "socket_from", how)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	var parentGone <-chan struct{}
	if cfg.watchPID > 0 {
		parentGone = watchProcess(cfg.watchPID)
	}
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				d.reload("SIGHUP")
				continue
			}
			logger.Info("stopping", "signal", s.String())
		case <-parentGone:
			logger.Info("stopping: the command the agent was started for has ended", "pid", cfg.watchPID)
		case <-ctx.Done():
			logger.Info("stopping")
		case err := <-serveErr:
			if err != nil {
				return err
			}
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown incomplete", "err", err)
	}
	if err := <-serveErr; err != nil {
		logger.Warn("serve", "err", err)
	}
	l.Close()
	if cfg.removeSocketDir && activated == nil {
		removeSocketDir(cfg.socket, logger)
	}
	logger.Info("stopped")
	return nil
}

// watchProcess closes the returned channel once pid has exited (or is a
// zombie waiting to be reaped).
func watchProcess(pid int) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for range t.C {
			if !processAlive(pid) {
				close(gone)
				return
			}
		}
	}()
	return gone
}

// checkNotRunning fails when an agent answers on socket, naming its pid
// when it is a safe-agent that says (agent.Listen checks again, racily
// but harmlessly, when it creates the socket).
func checkNotRunning(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil // nothing there, or a stale socket file Listen replaces
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	who := ""
	var st agent.Status
	if err := agentJSON(sshagent.NewClient(c).(sshagent.ExtendedAgent), agent.ExtStatus, &st); err == nil && st.PID > 0 {
		who = fmt.Sprintf(" (pid %d)", st.PID)
	}
	return hint.Wrap(fmt.Errorf("an agent is already running on %s%s", socket, who),
		fmt.Sprintf("use it (SSH_AUTH_SOCK=%s), stop it first, or choose another --socket", shellQuote(socket)))
}
