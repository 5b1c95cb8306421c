package keystore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func init() {
	childModes["scan-target"] = childScanTarget
}

// childScanTarget plays the agent: it loads a stored ed25519 key from
// item values (given in a file, returned as strings like go-keyring does),
// seals it, signs with it, runs the GC, reports its vault's address ranges
// and waits to be scanned.
func childScanTarget() int {
	var items map[string]string
	raw, err := os.ReadFile(os.Getenv("CHILD_ITEMS"))
	if err == nil {
		err = json.Unmarshal(raw, &items)
	}
	if err != nil {
		fmt.Println("items:", err)
		return 1
	}
	clear(raw)
	fb := newFakeBackend()
	fb.items = items
	k := newKeyring("safe-agent", 5*time.Second, nil, fb, func() error { return nil })
	v, err := NewVault(nil, VaultOptions{})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	keys, problems, err := k.Load(context.Background())
	if err != nil || len(problems) > 0 || len(keys) != 1 {
		fmt.Println("load:", keys, problems, err)
		return 1
	}
	lk, err := v.SealStored(&keys[0])
	if err != nil {
		fmt.Println("seal:", err)
		return 1
	}
	keys = nil
	for range scanSignatures {
		if _, err := lk.Sign(rand.Reader, make([]byte, 64)); err != nil {
			fmt.Println("sign:", err)
			return 1
		}
	}
	// The item values are still reachable here (the fake backend holds
	// them, like the keyring daemon does); they are base64 text, not seed
	// bytes. Three collections: one frees the heap copies, the next runs the
	// crypto caches' cleanups, the last frees what those dropped.
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond) // cleanups run on their own goroutine
	}
	v.mu.Lock()
	for _, c := range v.chunks {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(c.data)))
		fmt.Printf("vault %x %x\n", start, start+uintptr(len(c.data)))
	}
	v.mu.Unlock()
	fmt.Printf("secret-erasure %v\nready\n", SecretErasure)
	_, _ = io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(fb)
	runtime.KeepAlive(lk)
	return 0
}

// TestSeedCopiesOutsideVault counts the plaintext copies of a loaded and
// used ed25519 key's seed in the agent-like child's memory: exactly one
// inside the vault, and outside it no more than the package documentation
// explains (0 when built with GOEXPERIMENT=runtimesecret).
func TestSeedCopiesOutsideVault(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("reading another process's memory needs root: CI runs the tests as root")
		}
		t.Skip("reading another process's memory needs root")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.Clone(priv.Seed())
	sk, err := NewStoredKey(priv, "scan", Settings{}, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := encodeStoredKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	main, _, _ := encodeItems(payload, defaultChunkLen)
	idx, _ := encodeIndex([]string{sk.Fingerprint})
	idxMain, _, _ := encodeItems(idx, defaultChunkLen)
	items, _ := json.Marshal(map[string]string{sk.Fingerprint: string(main), indexAccount: string(idxMain)})
	itemsFile := filepath.Join(t.TempDir(), "items.json")
	if err := os.WriteFile(itemsFile, items, 0o600); err != nil {
		t.Fatal(err)
	}

	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = []string{childEnv + "=scan-target", "CHILD_ITEMS=" + itemsFile, "GOMAXPROCS=2"}
	if exp := os.Getenv("GOEXPERIMENT"); exp != "" {
		cmd.Env = append(cmd.Env, "GOEXPERIMENT="+exp)
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	type span struct{ lo, hi uint64 }
	var vault []span
	erasure := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "vault":
			lo, _ := strconv.ParseUint(f[1], 16, 64)
			hi, _ := strconv.ParseUint(f[2], 16, 64)
			vault = append(vault, span{lo, hi})
		case len(f) == 2 && f[0] == "secret-erasure":
			erasure = f[1] == "true"
		default:
			t.Fatalf("child: %s", sc.Text())
		}
	}
	if len(vault) == 0 {
		t.Fatal("child reported no vault")
	}

	pid := cmd.Process.Pid
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	inside, outside := 0, 0
	var where []string
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if !strings.HasPrefix(f[1], "r") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		buf = buf[:n]
		for off := 0; ; {
			i := bytes.Index(buf[off:], seed)
			if i < 0 {
				break
			}
			addr := start + uint64(off+i)
			isVault := false
			for _, s := range vault {
				if addr >= s.lo && addr < s.hi {
					isVault = true
				}
			}
			if isVault {
				inside++
			} else {
				outside++
				where = append(where, fmt.Sprintf("%x in %s", addr, strings.TrimSpace(line)))
			}
			off += i + 1
		}
	}
	t.Logf("seed copies: %d in the vault, %d outside (secret erasure: %v)\n%s", inside, outside, erasure, strings.Join(where, "\n"))
	if inside != 1 {
		t.Errorf("%d copies of the seed in the vault, want 1", inside)
	}
	// Without runtime/secret, the expanded keys crypto/ed25519 cached for
	// the heap copies of the last signatures (freed, not zeroed) may remain
	// until the allocator reuses their memory; see the package doc.
	limit := maxSeedCopiesPlain
	if erasure {
		limit = 0
	}
	if outside > limit {
		t.Errorf("%d copies of the seed outside the vault, want at most %d", outside, limit)
	}
}

const scanSignatures = 50

// maxSeedCopiesPlain is the bound for a build without runtime/secret: one
// expanded key per signature (the child's and Seal's self-test), which
// nothing has reused since, and two spare for parser leftovers.
const maxSeedCopiesPlain = scanSignatures + 1 + 2
