package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
)

func newLoadCmd() *cobra.Command {
	var socket, storeName string
	cmd := &cobra.Command{
		Use:   "load [KEY...]",
		Short: "Load stored keys into the running agent again (after ssh-add -D)",
		Long: `Loads keys stored in the keyring by ` + "`safe-agent add`" + ` into the running agent,
each with the settings stored with it: every stored key, or each KEY named
by fingerprint (SHA256:…), comment, or key file (private or .pub). Keys
the agent already holds are left as they are.

The agent loads stored keys when it starts; after ` + "`ssh-add -D`" + ` (or
` + "`ssh-add -d`" + `) this brings them back without a restart. Sending the agent
SIGHUP does the same for every stored key.`,
		Example: `  safe-agent load
  safe-agent load work-laptop
  safe-agent load SHA256:3q2+7w...`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLoad(cmd.Context(), socket, storeName, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "agent socket (default $SSH_AUTH_SOCK)")
	cmd.Flags().StringVar(&storeName, "keystore", keystore.NameKeyring, "keystore to load from: "+keystore.NameKeyring)
	return cmd
}

func runLoad(ctx context.Context, socket, storeName string, names []string, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	socket = agentSocket(socket)
	store, err := newKeystore(storeName, nil)
	if err != nil {
		return err
	}
	if store.Name() == keystore.NameNone {
		return hint.New("--keystore none keeps no keys: nothing to load", "use --keystore "+keystore.NameKeyring)
	}
	ag, conn := dialAgent(socket)
	if ag == nil {
		return fmt.Errorf("no agent answers on %s: start it with `safe-agent serve` (it loads the stored keys when it starts)", socket)
	}
	defer conn.Close()
	var infos []agent.KeyInfo
	if err := agentJSON(ag, agent.ExtList, &infos); err != nil {
		return fmt.Errorf("ask the agent on %s which keys it holds: %w (is it locked? `safe-agent unlock`)", socket, err)
	}
	loaded := map[string]bool{}
	for _, ki := range infos {
		if !ki.Certificate {
			loaded[ki.Fingerprint] = true
		}
	}

	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	keys, problems, err := store.Load(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("read the stored keys: %w", err)
	}
	defer func() {
		for i := range keys {
			clear(keys[i].PrivateKeyPEM)
		}
	}()
	chosen, failed := chooseStored(keys, problems, names, stderr)
	var nLoaded, nAlready int
	for _, sk := range chosen {
		if loaded[sk.Fingerprint] {
			fmt.Fprintf(stdout, "%s %s: already loaded\n", sk.Fingerprint, termtext.Escape(sk.Comment))
			nAlready++
			continue
		}
		if err := loadStored(ag, sk, stdout); err != nil {
			fmt.Fprintf(stderr, "safe-agent load: %s %s: %v\n", sk.Fingerprint, termtext.Escape(sk.Comment), err)
			failed++
			continue
		}
		loaded[sk.Fingerprint] = true
		nLoaded++
	}
	if len(keys) == 0 && len(problems) == 0 {
		fmt.Fprintln(stdout, "No keys are stored in the keyring (add them with `safe-agent add`).")
	} else {
		fmt.Fprintf(stdout, "Loaded %d key(s); %d already loaded.\n", nLoaded, nAlready)
	}
	if failed > 0 {
		return exitCodeError{code: 1}
	}
	return nil
}

// chooseStored picks the stored keys names select (all without names),
// each once. Names that select nothing or several keys, and keys the
// keyring holds but cannot return, are reported and counted as failures.
func chooseStored(keys []keystore.StoredKey, problems []error, names []string, stderr io.Writer) (chosen []*keystore.StoredKey, failed int) {
	reportProblem := func(p error) {
		fmt.Fprintf(stderr, "safe-agent load: %s\n", termtext.Escape(p.Error()))
		failed++
	}
	if len(names) == 0 {
		for _, p := range problems {
			reportProblem(p)
		}
		for i := range keys {
			chosen = append(chosen, &keys[i])
		}
		return chosen, failed
	}
	seen := map[string]bool{}
	for _, name := range names {
		fp, isFile := keyFileFingerprint(name)
		var m []*keystore.StoredKey
		for i := range keys {
			k := &keys[i]
			if (isFile && k.Fingerprint == fp) || k.Fingerprint == name || k.Comment == name {
				m = append(m, k)
			}
		}
		switch {
		case len(m) == 1:
			if !seen[m[0].Fingerprint] {
				seen[m[0].Fingerprint] = true
				chosen = append(chosen, m[0])
			}
			continue
		case len(m) > 1:
			fmt.Fprintf(stderr, "safe-agent load: %s names %d stored keys; use the fingerprint\n", termtext.Escape(name), len(m))
			failed++
			continue
		}
		if p := problemOf(problems, name, fp); p != nil {
			reportProblem(p)
			continue
		}
		fmt.Fprintf(stderr, "safe-agent load: %s: no stored key matches (see `safe-agent list`)\n", termtext.Escape(name))
		failed++
	}
	return chosen, failed
}

// problemOf is the load problem of the key name (or its file) stands for.
func problemOf(problems []error, name, fileFP string) error {
	for _, p := range problems {
		var kp *keystore.KeyProblem
		if errors.As(p, &kp) && (kp.Fingerprint == name || kp.Fingerprint == fileFP) {
			return p
		}
	}
	return nil
}

// loadStored adds one stored key to the agent with its stored settings,
// as the agent itself does at start.
func loadStored(ag sshagent.ExtendedAgent, sk *keystore.StoredKey, stdout io.Writer) error {
	priv, _, err := keystore.ParsePrivateKeyFile("stored key "+sk.Fingerprint, sk.PrivateKeyPEM, nil)
	if err != nil {
		return err
	}
	s := fromStored(sk.Settings)
	if err := ag.Add(agent.AddedKeyFor(priv, nil, sk.Comment, s, true)); err != nil {
		return fmt.Errorf("load into the agent: %w (is the agent locked? `safe-agent unlock`)", err)
	}
	fmt.Fprintf(stdout, "%s %s (%s): loaded into the agent\n", sk.Fingerprint, termtext.Escape(sk.Comment), keyTypeOf(priv))
	if t := settingsText(s.Confirm, s.Allow, s.Deny, s.MaxForwardDepth, s.Lifetime); t != "" {
		fmt.Fprintf(stdout, "  %s\n", termtext.Escape(t))
	}
	return nil
}
