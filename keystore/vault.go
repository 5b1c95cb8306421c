//go:build unix

package keystore

import (
	"errors"
	"fmt"
	"github.com/safe-agent/safe-agent/internal/hint"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrMemoryLock is wrapped by every error caused by memory that cannot be
// locked (RLIMIT_MEMLOCK too low). The message says what to do.
var ErrMemoryLock = errors.New("cannot lock memory for private keys")

// ErrVaultClosed is returned by a Vault or LockedKey used after Vault.Close.
var ErrVaultClosed = errors.New("key vault is closed")

const (
	// blockSize is the allocation unit inside a chunk.
	blockSize = 64
	// defaultChunkSize is the usable size of one mapping: four pages hold
	// 256 ed25519 keys or 9 RSA-4096 keys; more chunks are mapped on demand.
	defaultChunkSize = 16 << 10
)

// VaultOptions configure NewVault.
type VaultOptions struct {
	// AllowUnlocked keeps the vault working when memory cannot be locked
	// (the agent's --allow-unlocked-memory): keys then stay in
	// non-dumpable, guard-paged memory that the kernel may swap out.
	AllowUnlocked bool
}

// Vault owns the memory that holds private key bytes between signatures:
// anonymous mappings that are mlock'ed (never swapped), MADV_DONTDUMP (not in
// core dumps), MADV_WIPEONFORK (zero in a forked child), with a PROT_NONE
// guard page on each side so that an overrun from or into neighbouring memory
// faults instead of reading key bytes. Slots are wiped when freed and every
// mapping is wiped and unmapped by Close.
type Vault struct {
	log           *slog.Logger
	allowUnlocked bool
	chunkSize     int
	pageSize      int

	mu     sync.Mutex
	chunks []*chunk
	keys   map[*LockedKey]struct{}
	locked bool // every chunk mapped so far is mlock'ed
	closed bool
}

// chunk is one mapping: guard page, data pages, guard page.
type chunk struct {
	mapping []byte // as returned by mmap, guard pages included
	data    []byte // the read-write pages between the guards
	used    []bool // one per block of data
	inUse   int    // blocks in use
	locked  bool
}

// slot is a run of blocks in a chunk holding one key's secret bytes.
type slot struct {
	c      *chunk
	first  int    // first block
	blocks int    // number of blocks
	b      []byte // the requested length, a view into c.data
}

// NewVault maps and locks the first chunk of key memory, so that a
// RLIMIT_MEMLOCK too low to hold keys is reported when the agent starts, not
// at the first ssh-add. The error wraps ErrMemoryLock and names the limit and
// the fixes, unless opts.AllowUnlocked is set: then the failure is logged and
// the vault works without locking (Locked reports false).
func NewVault(log *slog.Logger, opts VaultOptions) (*Vault, error) {
	return newVault(log, opts, defaultChunkSize)
}

func newVault(log *slog.Logger, opts VaultOptions, chunkSize int) (*Vault, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Vault{
		log:           log,
		allowUnlocked: opts.AllowUnlocked,
		chunkSize:     chunkSize,
		pageSize:      os.Getpagesize(),
		keys:          make(map[*LockedKey]struct{}),
		locked:        true,
	}
	c, err := v.mapChunk(chunkSize)
	if err != nil {
		return nil, err
	}
	v.chunks = append(v.chunks, c)
	return v, nil
}

// Locked reports whether all key memory is locked into RAM. It is false only
// when memory could not be locked and VaultOptions.AllowUnlocked was set.
func (v *Vault) Locked() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.locked
}

// VaultStats describe the vault for status displays.
type VaultStats struct {
	Keys        int  // sealed keys
	Chunks      int  // mappings
	MappedBytes int  // usable bytes mapped (guard pages excluded)
	UsedBytes   int  // bytes allocated to keys (in blockSize units)
	Locked      bool // all mappings are mlock'ed
}

// Stats returns the vault's current size and lock state.
func (v *Vault) Stats() VaultStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := VaultStats{Keys: len(v.keys), Chunks: len(v.chunks), Locked: v.locked}
	for _, c := range v.chunks {
		s.MappedBytes += len(c.data)
		s.UsedBytes += c.inUse * blockSize
	}
	return s
}

// Close destroys every key sealed in the vault (waiting for signatures in
// progress), then wipes and unmaps all key memory. Later use of the vault or
// its keys returns ErrVaultClosed. Close is idempotent.
func (v *Vault) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	keys := make([]*LockedKey, 0, len(v.keys))
	for k := range v.keys {
		keys = append(keys, k)
	}
	v.mu.Unlock()

	for _, k := range keys {
		k.Destroy()
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.chunks {
		v.unmapChunk(c)
	}
	v.chunks = nil
}

// alloc returns a wiped slot of n bytes, mapping a new chunk when no chunk
// has room.
func (v *Vault) alloc(n int) (*slot, error) {
	if n <= 0 {
		return nil, errors.New("vault: empty allocation")
	}
	blocks := (n + blockSize - 1) / blockSize
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, ErrVaultClosed
	}
	for _, c := range v.chunks {
		if first, ok := c.find(blocks); ok {
			return c.take(first, blocks, n), nil
		}
	}
	c, err := v.mapChunk(max(v.chunkSize, blocks*blockSize))
	if err != nil {
		return nil, err
	}
	v.chunks = append(v.chunks, c)
	first, _ := c.find(blocks)
	return c.take(first, blocks, n), nil
}

// free wipes a slot and returns its blocks. A chunk left empty is unmapped,
// except the first, which keeps the memory lock the agent started with.
func (v *Vault) free(s *slot) {
	clear(s.c.data[s.first*blockSize : (s.first+s.blocks)*blockSize])
	for i := s.first; i < s.first+s.blocks; i++ {
		s.c.used[i] = false
	}
	s.c.inUse -= s.blocks
	s.b = nil
	if s.c.inUse > 0 || v.closed || len(v.chunks) == 0 || v.chunks[0] == s.c {
		return
	}
	for i, c := range v.chunks {
		if c == s.c {
			v.chunks = append(v.chunks[:i], v.chunks[i+1:]...)
			v.unmapChunk(c)
			break
		}
	}
}

func (c *chunk) find(blocks int) (int, bool) {
	run := 0
	for i, u := range c.used {
		if u {
			run = 0
			continue
		}
		run++
		if run == blocks {
			return i - blocks + 1, true
		}
	}
	return 0, false
}

func (c *chunk) take(first, blocks, n int) *slot {
	for i := first; i < first+blocks; i++ {
		c.used[i] = true
	}
	c.inUse += blocks
	off := first * blockSize
	return &slot{c: c, first: first, blocks: blocks, b: c.data[off : off+n : off+n]}
}

// mapChunk maps size bytes (rounded up to pages) between two PROT_NONE guard
// pages, excludes them from core dumps and forked children, and locks them.
// Called with v.mu held, or before v is shared.
func (v *Vault) mapChunk(size int) (*chunk, error) {
	ps := v.pageSize
	size = (size + ps - 1) / ps * ps
	m, err := unix.Mmap(-1, 0, size+2*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes for keys: %w", size, err)
	}
	fail := func(what string, err error) (*chunk, error) {
		_ = unix.Munmap(m)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.Mprotect(m[:ps], unix.PROT_NONE); err != nil {
		return fail("protect guard page", err)
	}
	if err := unix.Mprotect(m[ps+size:], unix.PROT_NONE); err != nil {
		return fail("protect guard page", err)
	}
	data := m[ps : ps+size : ps+size]
	if err := adviseSecret(data); err != nil {
		return fail("exclude key memory from core dumps", err)
	}
	c := &chunk{mapping: m, data: data, used: make([]bool, size/blockSize), locked: true}
	if err := unix.Mlock(data); err != nil {
		lockErr := memlockError(err, size, v.lockedBytes())
		if !v.allowUnlocked {
			_ = unix.Munmap(m)
			return nil, lockErr
		}
		if v.locked {
			v.log.Warn("key memory is NOT locked and may be swapped to disk (the caller allowed unlocked memory)", "err", lockErr)
		}
		c.locked = false
		v.locked = false
	}
	return c, nil
}

func (v *Vault) lockedBytes() int {
	n := 0
	for _, c := range v.chunks {
		if c.locked {
			n += len(c.data)
		}
	}
	return n
}

func (v *Vault) unmapChunk(c *chunk) {
	clear(c.data)
	if c.locked {
		_ = unix.Munlock(c.data)
	}
	if err := unix.Munmap(c.mapping); err != nil {
		v.log.Warn("unmap key memory", "err", err)
	}
	c.data, c.mapping = nil, nil
}

// memlockError explains a failed mlock: the limit and what is already
// locked; the hint says how to raise the limit (the CLI adds its own way
// out, running without locked memory).
func memlockError(err error, want, have int) error {
	var lim unix.Rlimit
	if gerr := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); gerr != nil {
		return hint.Wrap(fmt.Errorf("%w: mlock of %s failed: %v", ErrMemoryLock, kib(uint64(want)), err),
			"raise RLIMIT_MEMLOCK (`ulimit -l`, LimitMEMLOCK= in the systemd unit)")
	}
	cur, hard := uint64(lim.Cur), uint64(lim.Max) //nolint:unconvert // int64 on some platforms
	rec := uint64(8 << 20)
	if cur != rlimInfinity && cur >= rec {
		rec = 2 * cur
	}
	already := ""
	if have > 0 {
		already = fmt.Sprintf(" with %s already locked by safe-agent", kib(uint64(have)))
	}
	hardNote := ""
	if hard != rlimInfinity && hard < rec {
		hardNote = " (above the hard limit: set memlock in /etc/security/limits.conf first)"
	}
	return hint.Wrap(fmt.Errorf("%w: mlock of %s failed (%v)%s: RLIMIT_MEMLOCK is %s (hard limit %s)",
		ErrMemoryLock, kib(uint64(want)), err, already, limitString(cur), limitString(hard)),
		fmt.Sprintf("raise it with `ulimit -l %d` in the shell that starts safe-agent%s or LimitMEMLOCK=%dK in its systemd unit",
			rec>>10, hardNote, rec>>10))
}

const rlimInfinity = uint64(unix.RLIM_INFINITY)

func limitString(n uint64) string {
	if n == rlimInfinity {
		return "unlimited"
	}
	return kib(n)
}

func kib(n uint64) string {
	return fmt.Sprintf("%d KiB", n>>10)
}
