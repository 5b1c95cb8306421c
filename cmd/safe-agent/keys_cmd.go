package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/policy"
)

// dialAgent connects to a running agent; nil when none answers.
func dialAgent(socket string) (sshagent.ExtendedAgent, net.Conn) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, nil
	}
	return sshagent.NewClient(c).(sshagent.ExtendedAgent), c
}

// agentJSON calls one of safe-agent's own extensions.
func agentJSON(ag sshagent.ExtendedAgent, ext string, v any) error {
	res, err := ag.Extension(ext, nil)
	if err != nil {
		if errors.Is(err, sshagent.ErrExtensionUnsupported) {
			return errors.New("the agent on this socket is not safe-agent (or refused the request)")
		}
		return err
	}
	if len(res) == 0 {
		return errors.New("empty reply from agent")
	}
	return json.Unmarshal(res[1:], v)
}

// newKeystore opens the --keystore backend called name; log may be nil.
func newKeystore(name string, log *slog.Logger) (keystore.Store, error) {
	s, err := keystore.Open(name, log)
	if err != nil {
		return nil, fmt.Errorf("--keystore: %w", err)
	}
	return s, nil
}

// keystoreFlag adds --keystore (default: the first of keystore.Names) to
// fs; usage is followed by the names it takes and what each keeps keys in.
func keystoreFlag(fs interface {
	StringVar(p *string, name, value, usage string)
}, p *string, usage string) {
	names := keystore.Names()
	choices := make([]string, len(names))
	for i, n := range names {
		choices[i] = n + " (" + keystore.About(n) + ")"
	}
	fs.StringVar(p, "keystore", names[0], usage+": "+strings.Join(choices, " or "))
}

// keystoreUnlockHint is the flag-naming advice cmd adds to a keystore
// that cannot be reached: the agent can run without it.
const keystoreUnlockHint = "or run with --keystore " + keystore.NameNone

type addFlags struct {
	confirm  bool
	allow    []string
	deny     []string
	maxDepth int
	lifetime time.Duration
	comment  string
	noStore  bool
	socket   string
	keystore string
	// changed is cobra's Flags().Changed: which flags the user gave. A
	// key added again keeps its stored settings unless given new ones.
	changed func(name string) bool
}

func newAddCmd() *cobra.Command {
	var f addFlags
	cmd := &cobra.Command{
		Use:   "add [flags] [KEYFILE...]",
		Short: "Store keys in the OS keyring and load them into the agent",
		Long: `Reads private key files (OpenSSH, PEM or PKCS#8; passphrase-protected ones
ask for the passphrase on the terminal, or through SSH_ASKPASS without one),
stores each key with its settings in the OS keyring (unless --no-store), and
loads it into the running agent. Stored keys load again whenever the agent
starts. The settings are enforced together with the policy file: the
stricter wins.

With no KEYFILE it adds the default keys that exist, as ssh-add does:
~/.ssh/id_rsa, id_ecdsa, id_ecdsa_sk, id_ed25519, id_ed25519_sk and id_dsa.`,
		Example: `  safe-agent add ~/.ssh/id_ed25519 --confirm
  safe-agent add                    # the default keys in ~/.ssh
  safe-agent add ~/.ssh/work_key --allow jump.example --allow 'jump.example>*.internal' --max-forward-depth 1
  safe-agent add --no-store --lifetime 1h ~/.ssh/id_ecdsa`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			args, err := addKeyFiles(args, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return runAdd(cmd.Context(), f, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.confirm, "confirm", false, "ask before every use of the key")
	fl.StringArrayVar(&f.allow, "allow", nil, "destination the key may be used for (repeatable): host, glob, [host]:port, SHA256:fingerprint, or a>b")
	fl.StringArrayVar(&f.deny, "deny", nil, "destination the key must never be used for (repeatable)")
	fl.Var(newDepthValue(&f.maxDepth), "max-forward-depth", "how many forwarding hops the key may be used through (0 = never through a forwarded agent; default: as the policy says)")
	fl.DurationVar(&f.lifetime, "lifetime", 0, "unload the key after this long, e.g. 8h (0 = until removed)")
	fl.StringVar(&f.comment, "comment", "", "comment to store with the key (default: the key's own)")
	fl.BoolVar(&f.noStore, "no-store", false, "load into the running agent only; do not store in the keyring")
	fl.StringVar(&f.socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	keystoreFlag(fl, &f.keystore, "where to store keys")
	f.changed = fl.Changed
	return cmd
}

func runAdd(ctx context.Context, f addFlags, files []string, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	settings := policy.Settings{Confirm: f.confirm, Allow: f.allow, Deny: f.deny, Lifetime: f.lifetime}
	if f.maxDepth >= 0 {
		d := f.maxDepth
		settings.MaxForwardDepth = &d
	}
	var store keystore.Store
	if !f.noStore {
		s, err := newKeystore(f.keystore, nil)
		if err != nil {
			return err
		}
		store = s
	}
	socket := agentSocket(f.socket)
	ag, conn := dialAgent(socket)
	if conn != nil {
		defer conn.Close()
	}
	if ag == nil && (store == nil || store.Name() == keystore.NameNone) {
		why := "--no-store was given"
		if store != nil {
			why = "--keystore none keeps nothing"
		}
		return fmt.Errorf("no agent answers on %s and %s: start it with `safe-agent serve` (or set SSH_AUTH_SOCK)", socket, why)
	}
	failed := 0
	loaded := loadedKeys(ag)
	var changed, unchanged []string
	for _, file := range skipPublicHalves(files, stdout) {
		did, err := addOne(ctx, file, f, settings, store, ag, loaded, stdout)
		if err != nil {
			printError(stderr, "safe-agent add", err)
			failed++
		}
		if did {
			changed = append(changed, file)
		} else {
			unchanged = append(unchanged, file)
		}
	}
	if ag == nil && failed < len(files) {
		fmt.Fprintf(stdout, "No agent answers on %s: stored keys load when it starts (`safe-agent serve`).\n", socket)
	}
	if failed > 0 {
		printAddSummary(stderr, failed, changed, unchanged)
		return exitCodeError{code: 1}
	}
	return nil
}

// skipPublicHalves drops KEY.pub and KEY-cert.pub when KEY itself is
// given, so `safe-agent add ~/.ssh/id_*` adds each key once.
func skipPublicHalves(files []string, stdout io.Writer) []string {
	given := map[string]bool{}
	for _, f := range files {
		given[f] = true
	}
	var out []string
	for _, f := range files {
		base := strings.TrimSuffix(strings.TrimSuffix(f, ".pub"), "-cert")
		if strings.HasSuffix(f, ".pub") && given[base] {
			fmt.Fprintf(stdout, "Skipped %s: the public half of %s\n", f, base)
			continue
		}
		out = append(out, f)
	}
	return out
}

// addOne stores and loads one key file. A key already stored (or, without
// a keystore, already loaded) keeps its settings except those given as
// flags. did reports whether anything was changed, also when err says
// what then failed.
func addOne(ctx context.Context, file string, f addFlags, given policy.Settings, store keystore.Store, ag sshagent.ExtendedAgent, loaded map[string]agent.KeyInfo, stdout io.Writer) (did bool, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", file, err)
	}
	defer clear(data)
	priv, comment, err := keystore.ParsePrivateKeyFile(file, data, passphraseAsker(file))
	if err != nil {
		return false, err
	}
	fp, err := publicFingerprint(priv)
	if err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	prev, err := findPrevious(ctx, store, loaded, fp)
	if errors.Is(err, keystore.ErrUnavailable) {
		return false, hint.Wrap(fmt.Errorf("store %s in the keyring: %w", file, err), "use --no-store to load it into the agent for this session only")
	}
	if err != nil {
		return false, fmt.Errorf("%s: read the settings it may be stored with: %w\nnothing was changed, so no stored setting is lost", file, err)
	}
	settings, added := mergeSettings(policy.Settings{}, given, f), time.Now()
	switch {
	case f.comment != "":
		comment = f.comment
	case prev != nil && prev.comment != "":
		comment = prev.comment
	case comment == "":
		comment = pubComment(file)
	}
	if prev != nil {
		settings = mergeSettings(prev.settings, given, f)
		if !prev.added.IsZero() {
			added = prev.added
		}
	}
	sk, err := keystore.NewStoredKey(priv, comment, toStored(settings), added)
	if err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	defer clear(sk.PrivateKeyPEM)
	what := []string{}
	if store != nil && store.Name() != keystore.NameNone {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := store.Put(sctx, sk)
		cancel()
		if err != nil {
			return false, hint.Wrap(fmt.Errorf("store %s in the keyring: %w", file, err), "use --no-store to load it into the agent for this session only")
		}
		what = append(what, "stored in the keyring")
	}
	if ag != nil {
		if err := ag.Add(agent.AddedKeyFor(priv, nil, comment, settings, len(what) > 0)); err != nil {
			err = fmt.Errorf("load %s into the agent: %w (is the agent on SSH_AUTH_SOCK safe-agent, and unlocked?)", file, err)
			if len(what) > 0 {
				return true, fmt.Errorf("%w\n%s is stored in the keyring (with its settings) but not loaded into the agent: run `safe-agent load %s` once the agent takes keys", err, file, fp)
			}
			return false, err
		}
		what = append(what, "loaded into the agent")
	}
	fmt.Fprintf(stdout, "%s %s (%s): %s\n", sk.Fingerprint, termtext.Escape(comment), keyTypeOf(priv), strings.Join(what, ", "))
	printSettings(stdout, prev, settings, comment)
	if ag != nil {
		addCertificate(ag, file, priv, comment, settings, stdout)
	}
	return true, nil
}

// addCertificate loads KEY-cert.pub, when it exists and certifies the key,
// into the agent beside the key, as ssh-add does. Certificates are not
// stored in the keyring: they are short-lived and renewed, and the agent
// drops each at its ValidBefore. A certificate that cannot be added is
// reported; the key itself is loaded either way.
func addCertificate(ag sshagent.ExtendedAgent, file string, priv any, comment string, settings policy.Settings, stdout io.Writer) {
	certFile := strings.TrimSuffix(file, ".pem") + "-cert.pub"
	data, err := os.ReadFile(certFile)
	if err != nil {
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	cert, ok := pub.(*ssh.Certificate)
	if err != nil || !ok {
		fmt.Fprintf(stdout, "  %s is not a certificate: not added\n", certFile)
		return
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil || string(signer.PublicKey().Marshal()) != string(cert.Key.Marshal()) {
		fmt.Fprintf(stdout, "  %s certifies another key: not added\n", certFile)
		return
	}
	left := certTimeLeft(agent.CertInfoOf(cert), time.Now())
	if err := ag.Add(agent.AddedKeyFor(priv, cert, comment, settings, false)); err != nil {
		fmt.Fprintf(stdout, "  certificate %s (%s) not added: %v; renew it, then run this again\n", certFile, left, err)
		return
	}
	fmt.Fprintf(stdout, "  certificate %s %s loaded for this session (%s; not stored: the agent drops it when it expires)\n",
		certFile, termtext.Escape(strconv.Quote(cert.KeyId)), left)
}

func keyTypeOf(priv any) string {
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "?"
	}
	return s.PublicKey().Type()
}

// pubComment is the comment of KEYFILE.pub, or the file's name: an
// encrypted OpenSSH key does not reveal its comment before decryption.
func pubComment(file string) string {
	if b, err := os.ReadFile(file + ".pub"); err == nil {
		if _, c, _, _, err := ssh.ParseAuthorizedKey(b); err == nil && c != "" {
			return c
		}
	}
	return filepath.Base(file)
}

func settingsText(confirm bool, allow, deny []string, depth *int, lifetime time.Duration) string {
	var parts []string
	if confirm {
		parts = append(parts, "confirm every use")
	}
	if len(allow) > 0 {
		parts = append(parts, "allow "+strings.Join(allow, ", "))
	}
	if len(deny) > 0 {
		parts = append(parts, "deny "+strings.Join(deny, ", "))
	}
	if depth != nil {
		parts = append(parts, fmt.Sprintf("max forward depth %d", *depth))
	}
	if lifetime > 0 {
		parts = append(parts, "lifetime "+lifetime.String())
	}
	return strings.Join(parts, "; ")
}

// passphraseAsker asks for a key file's passphrase.
func passphraseAsker(file string) func() ([]byte, error) {
	return func() ([]byte, error) {
		return askSecret(fmt.Sprintf("Enter passphrase for %s: ", file), file+" is protected by a passphrase")
	}
}

// askSecret asks on the terminal, or through SSH_ASKPASS when there is no
// terminal, as ssh-add does. why says what needs the secret, for errors.
func askSecret(prompt, why string) ([]byte, error) {
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		fmt.Fprint(tty, prompt)
		p, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		return p, nil
	}
	askpass := os.Getenv("SSH_ASKPASS")
	if askpass == "" {
		return nil, fmt.Errorf("%s and there is no terminal to ask on: run this from a terminal, or set SSH_ASKPASS", why)
	}
	out, err := exec.Command(askpass, prompt).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: passphrase program %s: %w", why, askpass, err)
	}
	return bytes.TrimRight(out, "\r\n"), nil
}

// newLockCmd and newUnlockCmd are `ssh-add -x` / `ssh-add -X`: while
// locked the agent lists no keys and signs nothing.
func newLockCmd(lock bool) *cobra.Command {
	var socket string
	use, short, example := "unlock", "Unlock the agent with the passphrase it was locked with", "  safe-agent unlock"
	if lock {
		use, short, example = "lock", "Lock the agent with a passphrase: no keys are listed or used until unlock", "  safe-agent lock\n  safe-agent unlock"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			socket = agentSocket(socket)
			ag, conn := dialAgent(socket)
			if ag == nil {
				return fmt.Errorf("no agent answers on %s: is safe-agent running (and SSH_AUTH_SOCK set)?", socket)
			}
			defer conn.Close()
			prompt := "Enter lock passphrase: "
			if !lock {
				prompt = "Enter unlock passphrase: "
			}
			pass, err := askSecret(prompt, use+" needs a passphrase")
			if err != nil {
				return err
			}
			defer clear(pass)
			if lock {
				if err := ag.Lock(pass); err != nil {
					return fmt.Errorf("lock refused (already locked?): %w", err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Agent locked.")
				return nil
			}
			if err := ag.Unlock(pass); err != nil {
				return fmt.Errorf("unlock refused: wrong passphrase, or the agent is not locked")
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Agent unlocked.")
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	return cmd
}

type listFlags struct {
	json     bool
	socket   string
	keystore string
}

// listedKey merges what the agent holds and what the keystore keeps.
type listedKey struct {
	agent.KeyInfo
	InStore bool `json:"in_keystore"`
	Loaded  bool `json:"loaded"`
}

func newListCmd() *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys: loaded in the agent and stored in the keyring, with their settings",
		Example: `  safe-agent list
  safe-agent list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&f.json, "json", false, "print JSON")
	cmd.Flags().StringVar(&f.socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	keystoreFlag(cmd.Flags(), &f.keystore, "keystore to read")
	return cmd
}

// collectKeys gathers keys from the agent and the keystore; problems are
// reported as notes, not errors, so one unreachable side still lists.
func collectKeys(ctx context.Context, socket, storeName string) ([]listedKey, []string) {
	var notes []string
	byFP := map[string]*listedKey{}
	var order []string
	if ag, conn := dialAgent(socket); ag != nil {
		defer conn.Close()
		var infos []agent.KeyInfo
		if err := agentJSON(ag, agent.ExtList, &infos); err != nil {
			notes = append(notes, agentListNote(ag, socket, err))
		}
		for _, ki := range infos {
			k := &listedKey{KeyInfo: ki, Loaded: true}
			// A certificate shares its key's fingerprint: list it apart
			// (stored keys are plain and pair with the plain entry).
			id := ki.Fingerprint
			if ki.Certificate {
				id = ki.PublicKey
			}
			byFP[id] = k
			order = append(order, id)
		}
	} else {
		notes = append(notes, fmt.Sprintf("no agent answers on %s", socket))
	}
	if store, err := newKeystore(storeName, nil); err == nil && store.Name() != keystore.NameNone {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		keys, problems, err := store.Load(lctx)
		cancel()
		if err != nil {
			notes = append(notes, "keyring: "+err.Error())
		}
		for _, p := range problems {
			notes = append(notes, p.Error())
		}
		for i := range keys {
			sk := &keys[i]
			k, ok := byFP[sk.Fingerprint]
			if !ok {
				k = &listedKey{KeyInfo: agent.KeyInfo{Fingerprint: sk.Fingerprint, Comment: sk.Comment, Type: pemKeyType(sk.PrivateKeyPEM),
					Confirm: sk.Settings.Confirm, Allow: sk.Settings.Allow, Deny: sk.Settings.Deny, MaxForwardDepth: sk.Settings.MaxForwardDepth}}
				byFP[sk.Fingerprint] = k
				order = append(order, sk.Fingerprint)
			}
			k.InStore = true
			clear(sk.PrivateKeyPEM)
		}
	}
	out := make([]listedKey, 0, len(order))
	for _, fp := range order {
		out = append(out, *byFP[fp])
	}
	return out, notes
}

func pemKeyType(pemBytes []byte) string {
	s, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return "?"
	}
	return s.PublicKey().Type()
}

func runList(ctx context.Context, f listFlags, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	keys, notes := collectKeys(ctx, agentSocket(f.socket), f.keystore)
	for _, n := range notes {
		fmt.Fprintln(stderr, "note:", termtext.Escape(n))
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(keys)
	}
	if len(keys) == 0 {
		fmt.Fprintln(stdout, "No keys loaded or stored.")
		return nil
	}
	printKeyTable(stdout, keys)
	printCertificates(stdout, keys, time.Now())
	return nil
}

// printCertificates describes each certificate in the agent: who issued
// it, for whom, and how long it has left.
func printCertificates(w io.Writer, keys []listedKey, now time.Time) {
	first := true
	for _, k := range keys {
		c := k.Cert
		if c == nil {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nCertificates:")
			first = false
		}
		pr := "no principals (any user)"
		if len(c.Principals) > 0 {
			pr = "principals " + strings.Join(c.Principals, ", ")
		}
		fmt.Fprintf(w, "  %s %s: %s; CA %s; %s\n", termtext.Escape(k.Fingerprint), termtext.Escape(strconv.Quote(c.KeyID)),
			termtext.Escape(pr), c.CAFingerprint, certTimeLeft(c, now))
	}
}

// certTimeLeft is "expires in 3h12m", "expired", "valid from … (in 5m)" or
// "never expires".
func certTimeLeft(c *agent.CertInfo, now time.Time) string {
	switch {
	case !c.ValidAfter.IsZero() && now.Before(c.ValidAfter):
		return fmt.Sprintf("not valid yet: from %s (in %s)", c.ValidAfter.Local().Format(time.DateTime), shortDuration(c.ValidAfter.Sub(now)))
	case c.ValidBefore.IsZero():
		return "never expires"
	case !now.Before(c.ValidBefore):
		return "expired"
	}
	return "expires in " + shortDuration(c.ValidBefore.Sub(now))
}

// shortDuration is 3h12m, 4m10s, 12s: two units at most.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h >= 48:
		return fmt.Sprintf("%dd%dh", h/24, h%24)
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// printKeyTable prints keys in columns. Comments and the host names of
// settings may come from whoever added the key (or a tab that would shift
// the columns), so every cell is escaped for the terminal.
func printKeyTable(w io.Writer, keys []listedKey) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tTYPE\tCOMMENT\tSTORED\tLOADED\tSETTINGS")
	for _, k := range keys {
		var lifetime time.Duration
		if !k.Expires.IsZero() {
			lifetime = time.Until(k.Expires).Round(time.Second)
		}
		s := settingsText(k.Confirm, k.Allow, k.Deny, k.MaxForwardDepth, lifetime)
		if k.Restricted != "" {
			s = strings.TrimPrefix(s+"; ssh-add -h "+k.Restricted, "; ")
		}
		if s == "" {
			s = "-"
		}
		if k.Upstream != "" {
			s += " (upstream " + k.Upstream + ")"
		}
		e := termtext.Escape
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e(k.Fingerprint), e(k.Type), e(k.Comment), yesNo(k.InStore), yesNo(k.Loaded), e(s))
	}
	tw.Flush()
}

func newRemoveCmd() *cobra.Command {
	var socket, storeName string
	cmd := &cobra.Command{
		Use:   "remove KEY...",
		Short: "Remove keys from the agent and from the keyring",
		Long: `Removes each KEY, named by fingerprint (SHA256:…), comment, or key file
(private or .pub), from the running agent and from the keyring.`,
		Example: `  safe-agent remove SHA256:3q2+7w...
  safe-agent remove work-laptop
  safe-agent remove ~/.ssh/id_ed25519`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRemove(cmd.Context(), socket, storeName, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	keystoreFlag(cmd.Flags(), &storeName, "keystore")
	return cmd
}

// keyFileFingerprint reads a key file's fingerprint from its public half.
func keyFileFingerprint(file string) (string, bool) {
	for _, p := range []string{file, file + ".pub"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if pk, _, _, _, err := ssh.ParseAuthorizedKey(b); err == nil {
			return ssh.FingerprintSHA256(pk), true
		}
		if s, err := ssh.ParsePrivateKey(b); err == nil {
			return ssh.FingerprintSHA256(s.PublicKey()), true
		}
	}
	return "", false
}

func runRemove(ctx context.Context, socket, storeName string, names []string, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	socket = agentSocket(socket)
	keys, notes := collectKeys(ctx, socket, storeName)
	failed := 0
	for _, name := range names {
		var matches []listedKey
		fp, isFile := keyFileFingerprint(name)
		for _, k := range keys {
			if (isFile && k.Fingerprint == fp) || k.Fingerprint == name || k.Comment == name {
				matches = append(matches, k)
			}
		}
		if len(matches) == 0 {
			// A key the keyring lists but cannot load (a corrupt or
			// missing item) is not among keys, yet its load error tells
			// the user to remove it by fingerprint: delete it directly.
			target := name
			if isFile {
				target = fp
			}
			if strings.HasPrefix(target, "SHA256:") {
				deleted, err := deleteStored(ctx, storeName, target)
				if err != nil {
					fmt.Fprintf(stderr, "safe-agent remove: %s: delete from the keyring: %v\n", name, err)
					failed++
					continue
				}
				if deleted {
					fmt.Fprintf(stdout, "%s: deleted from the keyring (it could not be loaded)\n", target)
					continue
				}
			}
		}
		switch {
		case len(matches) == 0:
			fmt.Fprintf(stderr, "safe-agent remove: %s: no such key in the agent or the keyring (see `safe-agent list`)\n", name)
			for _, n := range notes {
				fmt.Fprintln(stderr, "note:", termtext.Escape(n))
			}
			failed++
			continue
		case len(matches) > 1:
			fmt.Fprintf(stderr, "safe-agent remove: %s names %d keys; use the fingerprint\n", name, len(matches))
			failed++
			continue
		}
		k := matches[0]
		var done []string
		if k.Loaded {
			ag, conn := dialAgent(socket)
			if ag == nil {
				fmt.Fprintf(stderr, "safe-agent remove: %s: agent on %s went away\n", name, socket)
				failed++
				continue
			}
			pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey))
			if err == nil {
				err = ag.Remove(pk)
			}
			conn.Close()
			if err != nil {
				fmt.Fprintf(stderr, "safe-agent remove: %s: remove from agent: %v\n", name, err)
				failed++
				continue
			}
			done = append(done, "removed from the agent")
		}
		// A key the keyring could not be read for (locked) is not
		// InStore, yet may well be stored: try to delete it anyway, so a
		// key that would come back at the next start is never reported
		// as removed.
		deleted, err := deleteStored(ctx, storeName, k.Fingerprint)
		if err != nil && !k.InStore && !k.Stored && errors.Is(err, keystore.ErrUnavailable) {
			// The agent did not get this key from the keyring (ssh-add,
			// --no-store): most likely it is not stored; say so, do not fail.
			fmt.Fprintf(stderr, "note: %s: the keyring could not be checked (%v); if this key is stored there too, run `safe-agent remove %s` again once the keyring is available\n",
				termtext.Escape(k.Fingerprint), err, k.Fingerprint)
			err = nil
		}
		if err != nil {
			fmt.Fprintf(stderr, "safe-agent remove: %s\n", stillStoredText(k, done, err))
			failed++
			continue
		}
		if deleted {
			done = append(done, "deleted from the keyring")
		}
		fmt.Fprintf(stdout, "%s %s: %s\n", termtext.Escape(k.Fingerprint), termtext.Escape(k.Comment), strings.Join(done, ", "))
	}
	if failed > 0 {
		return exitCodeError{code: 1}
	}
	return nil
}

func newForgetCmd() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "forget",
		Short: "Clear every remembered confirmation",
		Long: `A yes to a confirmation prompt may be remembered for a while (the policy's
"remember"). forget clears them all, so the next use of any key asks again.
Locking the agent and removing a key clear them too.`,
		Example: `  safe-agent forget`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			socket = agentSocket(socket)
			ag, conn := dialAgent(socket)
			if ag == nil {
				return fmt.Errorf("no agent answers on %s: is safe-agent running (and SSH_AUTH_SOCK set)?", socket)
			}
			defer conn.Close()
			var res map[string]int
			if err := agentJSON(ag, agent.ExtForget, &res); err != nil {
				return fmt.Errorf("forget: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Forgot %d remembered confirmation(s).\n", res["forgotten"])
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	return cmd
}

// stillStoredText explains a key that could not be deleted from the
// keyring: it comes back whenever the agent starts, so the user must
// learn that and how to finish.
func stillStoredText(k listedKey, done []string, err error) string {
	head := termtext.Escape(k.Fingerprint + " " + k.Comment)
	if len(done) > 0 {
		head += ": " + strings.Join(done, ", ") + ", but"
	} else {
		head += ":"
	}
	still := "the key is still stored in the keyring"
	if !k.InStore && !k.Stored {
		still = "the key may still be stored in the keyring (it could not be read)"
	}
	again := fmt.Sprintf("then run `safe-agent remove %s` again; until then the key loads again whenever the agent starts.", k.Fingerprint)
	switch {
	case errors.Is(err, keystore.ErrLocked):
		return fmt.Sprintf("%s %s, which is locked.\nUnlock it (e.g. log in to your desktop session, or `secret-tool search --unlock service safe-agent`, which asks for the keyring's password), %s",
			head, still, again)
	case errors.Is(err, keystore.ErrUnavailable):
		return fmt.Sprintf("%s %s, which cannot be reached now (%v).\nMake it available (start or unlock your keyring), %s", head, still, err, again)
	}
	return fmt.Sprintf("%s %s: deleting it failed (%v).\nFix the keyring, %s", head, still, err, again)
}

// deleteStored deletes fingerprint from the keystore; deleted is false
// when it is not stored there (or the keystore is "none").
func deleteStored(ctx context.Context, storeName, fingerprint string) (deleted bool, err error) {
	store, err := newKeystore(storeName, nil)
	if err != nil || store.Name() == keystore.NameNone {
		return false, err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = store.Delete(dctx, fingerprint)
	if errors.Is(err, keystore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
