package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// keyringAgent is an agent keeping its keys in a real gnome-keyring on a
// private session bus.
type keyringAgent struct {
	a   *agentProc
	bus *secretBus
}

func newKeyringAgent(t *testing.T, policy string) *keyringAgent {
	t.Helper()
	bus := startSecretBus(t, unlockedKeyring)
	a := startAgent(t, agentOpts{policy: policy, args: keyringArgs, env: []string{"DBUS_SESSION_BUS_ADDRESS=" + bus.Addr}})
	return &keyringAgent{a: a, bus: bus}
}

// cli runs `safe-agent ARGS` as the user would, with no terminal.
func (k *keyringAgent) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runSplit(t, append(k.a.env(), "DBUS_SESSION_BUS_ADDRESS="+k.bus.Addr), agentBin(), args...)
}

func (k *keyringAgent) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := k.cli(t, args...)
	if code != 0 {
		t.Fatalf("safe-agent %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// storedSettings are the settings the keyring holds, read with `list
// --json` while no agent answers (so only the keyring speaks).
type storedEntry struct {
	Fingerprint string   `json:"fingerprint"`
	Comment     string   `json:"comment"`
	Confirm     bool     `json:"confirm"`
	Allow       []string `json:"allow"`
	InKeystore  bool     `json:"in_keystore"`
	Loaded      bool     `json:"loaded"`
}

func (k *keyringAgent) stored(t *testing.T) map[string]storedEntry {
	t.Helper()
	out, errOut, code := k.cli(t, "list", "--json", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 0 || strings.Contains(errOut, "keyring") {
		t.Fatalf("list --json (keyring only): exit %d\n%s%s", code, out, errOut)
	}
	var list []storedEntry
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	m := map[string]storedEntry{}
	for _, e := range list {
		m[e.Fingerprint] = e
	}
	return m
}

// lockKeyring locks the login collection through the Secret Service API,
// as the desktop does when the screen locks or the session ends.
func (k *keyringAgent) lockKeyring(t *testing.T) {
	t.Helper()
	need(t, "dbus-send", "dbus")
	out, code := runEnv(t, []string{"PATH=" + os.Getenv("PATH"), "DBUS_SESSION_BUS_ADDRESS=" + k.bus.Addr}, "", "dbus-send", "--session", "--print-reply",
		"--dest=org.freedesktop.secrets", "/org/freedesktop/secrets", "org.freedesktop.Secret.Service.Lock",
		"array:objpath:/org/freedesktop/secrets/collection/login")
	if code != 0 || !strings.Contains(out, "/org/freedesktop/secrets/collection/login") {
		t.Fatalf("lock the keyring: exit %d\n%s", code, out)
	}
}

// TestI13bReAddKeepsStoredSettings: `add id_*` after `add id_a --confirm`
// keeps --confirm and says so; flags given explicitly replace just their
// fields and the change is printed old → new; a failure among several
// keys ends with which keys were changed and which were not, exit 1.
func TestI13bReAddKeepsStoredSettings(t *testing.T) {
	k := newKeyringAgent(t, "")
	dir := t.TempDir()
	a := makeKey(t, dir, "id_a", "ed25519", 0)
	b := makeKey(t, dir, "id_b", "ed25519", 0)

	k.mustCLI(t, "add", a.Path, "--confirm", "--allow", "h1")
	out := k.mustCLI(t, "add", a.Path, a.Path+".pub", b.Path, b.Path+".pub") // as `add ~/.ssh/id_*` expands
	if !strings.Contains(out, a.Fingerprint+" id_a (ssh-ed25519): stored in the keyring, loaded into the agent\n  settings kept (it was already stored with them): confirm every use; allow h1\n") {
		t.Errorf("re-adding id_a does not say its stored settings were kept:\n%s", out)
	}
	if strings.Contains(out, "settings kept") && strings.Count(out, "settings kept") != 1 {
		t.Errorf("id_b was new, only id_a keeps settings:\n%s", out)
	}
	st := k.stored(t)
	if e := st[a.Fingerprint]; !e.Confirm || strings.Join(e.Allow, ",") != "h1" {
		t.Fatalf("after `add id_*` the keyring holds id_a with %+v, want confirm and allow h1 kept", e)
	}
	if e := st[b.Fingerprint]; e.Confirm || len(e.Allow) != 0 || !e.InKeystore {
		t.Fatalf("id_b stored as %+v, want stored without settings", e)
	}
	keys, _ := listKeys(t, k.a, &secretService{Addr: k.bus.Addr})
	if !keys[a.Fingerprint].Confirm {
		t.Errorf("the agent dropped id_a's --confirm on re-add: %+v", keys[a.Fingerprint])
	}

	out = k.mustCLI(t, "add", a.Path, "--confirm=false", "--allow", "h1", "--allow", "h2")
	if !strings.Contains(out, "  settings: confirm yes → no; allow [h1] → [h1, h2]\n") {
		t.Errorf("changing id_a's settings does not print old → new:\n%s", out)
	}
	if e := k.stored(t)[a.Fingerprint]; e.Confirm || strings.Join(e.Allow, ",") != "h1,h2" {
		t.Errorf("keyring holds %+v after the change, want confirm off, allow h1,h2", e)
	}

	// One of three fails: the other two are changed and the summary says so.
	missing := filepath.Join(dir, "id_missing")
	out, errOut, code := k.cli(t, "add", a.Path, missing, b.Path, "--confirm")
	t.Logf("safe-agent add with one missing file:\n%s%s", out, errOut)
	if code == 0 {
		t.Fatalf("add with a missing file exited 0:\n%s%s", out, errOut)
	}
	want := "safe-agent add: 1 of 3 failed (see above). Changed: " + a.Path + ", " + b.Path + ". Not changed: " + missing + ".\n"
	if !strings.HasSuffix(errOut, want) {
		t.Errorf("summary line missing or wrong; stderr:\n%s\nwant it to end with:\n%s", errOut, want)
	}
	if !strings.Contains(out, "  settings: confirm no → yes\n") || !strings.Contains(out, b.Fingerprint) {
		t.Errorf("the keys that were added do not say what changed:\n%s", out)
	}
}

// TestI13bRemoveLockedKeyring: `remove` with the keyring locked takes the
// key out of the agent but cannot delete it from the keyring: it exits 1
// and says the key is still stored and how to finish; the key is still in
// the keyring (it would load again at the next start).
func TestI13bRemoveLockedKeyring(t *testing.T) {
	k := newKeyringAgent(t, "")
	dir := t.TempDir()
	a := makeKey(t, dir, "id_a", "ed25519", 0)
	k.mustCLI(t, "add", a.Path)
	k.lockKeyring(t)

	out, errOut, code := k.cli(t, "remove", "id_a")
	t.Logf("safe-agent remove id_a with the keyring locked:\n%s%s", out, errOut)
	if code == 0 {
		t.Fatalf("remove with a locked keyring exited 0:\n%s%s", out, errOut)
	}
	for _, want := range []string{
		a.Fingerprint + " id_a: removed from the agent, but the key is still stored in the keyring, which is locked.\n",
		"Unlock it (e.g. log in to your desktop session, or `secret-tool search --unlock service safe-agent`, which asks for the keyring's password), ",
		"then run `safe-agent remove " + a.Fingerprint + "` again; until then the key loads again whenever the agent starts.",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(out, "removed from the agent") {
		t.Errorf("stdout reports success:\n%s", out)
	}
	if l, _ := k.a.run("ssh-add", "-l"); strings.Contains(l, a.Fingerprint) {
		t.Errorf("the key is still in the agent:\n%s", l)
	}

	if _, errOut, code := k.cli(t, "load"); code == 0 || !strings.Contains(errOut, "locked") {
		t.Errorf("load with the keyring locked: exit %d, want 1 naming the locked keyring:\n%s", code, errOut)
	}

	// Finish as told: unlock, run it again. The key was still stored.
	k.unlockKeyring(t)
	if e, ok := k.stored(t)[a.Fingerprint]; !ok || !e.InKeystore {
		t.Fatalf("after unlocking, the key is not in the keyring: the failed remove deleted it after all")
	}
	out = k.mustCLI(t, "remove", a.Fingerprint)
	if out != a.Fingerprint+" id_a: deleted from the keyring\n" {
		t.Errorf("second remove printed %q", out)
	}
	if _, ok := k.stored(t)[a.Fingerprint]; ok {
		t.Errorf("the key is still stored after the second remove")
	}
}

// unlockKeyring unlocks the login keyring with its password, as the
// desktop's unlock dialog does (there is no dialog here: gnome-keyring's
// own interface for that takes the password directly).
func (k *keyringAgent) unlockKeyring(t *testing.T) {
	t.Helper()
	conn, err := dbus.Connect(k.bus.Addr)
	if err != nil {
		t.Fatalf("connect to the session bus: %v", err)
	}
	defer conn.Close()
	svc := conn.Object("org.freedesktop.secrets", "/org/freedesktop/secrets")
	var out dbus.Variant
	var session dbus.ObjectPath
	if err := svc.Call("org.freedesktop.Secret.Service.OpenSession", 0, "plain", dbus.MakeVariant("")).Store(&out, &session); err != nil {
		t.Fatalf("open a Secret Service session: %v", err)
	}
	secret := struct {
		Session     dbus.ObjectPath
		Parameters  []byte
		Value       []byte
		ContentType string
	}{session, []byte{}, []byte("test-password"), "text/plain"}
	if err := svc.Call("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface.UnlockWithMasterPassword", 0,
		dbus.ObjectPath("/org/freedesktop/secrets/collection/login"), secret).Err; err != nil {
		t.Fatalf("unlock the keyring: %v", err)
	}
}

// TestI13bLoadAndSIGHUP: after ssh-add -D, `safe-agent load KEY` loads one
// stored key back with its settings, `safe-agent load` the rest (and says
// which were already loaded), and SIGHUP does the same without the CLI.
func TestI13bLoadAndSIGHUP(t *testing.T) {
	k := newKeyringAgent(t, "")
	dir := t.TempDir()
	a := makeKey(t, dir, "id_a", "ed25519", 0)
	b := makeKey(t, dir, "id_b", "ed25519", 0)
	k.mustCLI(t, "add", a.Path, "--confirm")
	k.mustCLI(t, "add", b.Path)

	k.a.mustRun("ssh-add", "-D")
	if l, _ := k.a.run("ssh-add", "-l"); !strings.Contains(l, "no identities") {
		t.Fatalf("ssh-add -D left keys:\n%s", l)
	}
	out := k.mustCLI(t, "load", "id_a")
	if out != a.Fingerprint+" id_a (ssh-ed25519): loaded into the agent\n  confirm every use\nLoaded 1 key(s); 0 already loaded.\n" {
		t.Errorf("load id_a printed:\n%s", out)
	}
	out = k.mustCLI(t, "load")
	for _, want := range []string{a.Fingerprint + " id_a: already loaded\n", b.Fingerprint + " id_b (ssh-ed25519): loaded into the agent\n", "Loaded 1 key(s); 1 already loaded.\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("load printed:\n%s\nwant a line %q", out, want)
		}
	}
	keys, _ := listKeys(t, k.a, &secretService{Addr: k.bus.Addr})
	if ka := keys[a.Fingerprint]; !ka.Loaded || !ka.Confirm || !keys[b.Fingerprint].Loaded {
		t.Errorf("after load: %+v, want both loaded, id_a with confirm", keys)
	}
	if _, errOut, code := k.cli(t, "load", "nobody"); code != 1 || !strings.Contains(errOut, "nobody: no stored key matches") {
		t.Errorf("load of an unknown key: exit %d\n%s", code, errOut)
	}

	// SIGHUP: the stored keys come back by themselves.
	k.a.mustRun("ssh-add", "-D")
	if err := k.a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, _ := k.a.run("ssh-add", "-l")
		if strings.Contains(l, a.Fingerprint) && strings.Contains(l, b.Fingerprint) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after ssh-add -D and SIGHUP the stored keys did not come back:\n%s\nagent log:\n%s", l, k.a.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitLogRE(t, k.a, `msg="stored keys reloaded" why=SIGHUP loaded=2 already_loaded=0`, 5*time.Second)
	keys, _ = listKeys(t, k.a, &secretService{Addr: k.bus.Addr})
	if !keys[a.Fingerprint].Confirm {
		t.Errorf("id_a came back without its stored --confirm: %+v", keys[a.Fingerprint])
	}
	// A second SIGHUP with everything loaded loads nothing twice.
	k.a.cmd.Process.Signal(syscall.SIGHUP)
	waitLogRE(t, k.a, `msg="stored keys reloaded" why=SIGHUP loaded=0 already_loaded=2`, 20*time.Second)
}
