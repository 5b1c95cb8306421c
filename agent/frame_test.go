//go:build linux

package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// unixPair is a connected pair of unix stream sockets.
func unixPair(t *testing.T) (server, client *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// readFrames reads n frames the way ServeAgent does: the length, then the
// body.
func readFrames(t *testing.T, r io.Reader, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for range n {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			t.Fatalf("read length: %v", err)
		}
		body := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("read body: %v", err)
		}
		out = append(out, body)
	}
	return out
}

// The reply's length is not sent on its own: until the body is written
// the client has nothing to read, and then it reads the whole reply at
// once (one wake-up, one system call, on both sides).
func TestFrameReplyGoesOutInOneWrite(t *testing.T) {
	srv, cli := unixPair(t)
	f := &frameReader{c: srv}
	body := bytes.Repeat([]byte{0x0e}, 90)
	if n, err := f.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body)))); n != 4 || err != nil {
		t.Fatalf("write length: %d, %v", n, err)
	}
	raw, err := cli.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	peek := func() (int, error) {
		var n int
		var perr error
		buf := make([]byte, 1024)
		if err := raw.Control(func(fd uintptr) {
			n, _, perr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		}); err != nil {
			t.Fatal(err)
		}
		return n, perr
	}
	if n, err := peek(); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("after the length alone the client can read %d bytes (%v); want nothing until the body", n, err)
	}
	if n, err := f.Write(body); n != len(body) || err != nil {
		t.Fatalf("write body: %d, %v", n, err)
	}
	if n, err := peek(); n != 4+len(body) || err != nil {
		t.Fatalf("the client can read %d bytes (%v), want the whole reply (%d) at once", n, err, 4+len(body))
	}
	if got := readFrames(t, cli, 1)[0]; !bytes.Equal(got, body) {
		t.Fatalf("reply body %x, want %x", got, body)
	}
	// Writes that are not a length are passed on unchanged.
	if n, err := f.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("plain write: %d, %v", n, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(cli, got); err != nil || string(got) != "hello" {
		t.Fatalf("plain write read back %q, %v", got, err)
	}
}

// Frames are handed to ServeAgent unchanged however the client splits or
// joins its writes: byte by byte, two requests in one write, a body
// longer than the read-ahead.
func TestFrameReaderSplitsAndJoins(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 3*readAhead+17)
	bodies := [][]byte{{11}, bytes.Repeat([]byte{13}, 300), big, {11}, bytes.Repeat([]byte{27}, readAhead-4)}
	var stream []byte
	for _, b := range bodies {
		stream = append(stream, frameOf(b)...)
	}
	for _, tc := range []struct {
		name  string
		chunk int
	}{{"one write", len(stream)}, {"byte by byte", 1}, {"7 bytes", 7}, {"read-ahead sized", readAhead}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := unixPair(t)
			go func() {
				for i := 0; i < len(stream); i += tc.chunk {
					if _, err := cli.Write(stream[i:min(i+tc.chunk, len(stream))]); err != nil {
						return
					}
					if tc.chunk < 8 && i%97 == 0 {
						time.Sleep(time.Millisecond) // let the reader see partial headers
					}
				}
				cli.CloseWrite()
			}()
			f := &frameReader{c: srv}
			got := readFrames(t, f, len(bodies))
			for i := range bodies {
				if !bytes.Equal(got[i], bodies[i]) {
					t.Fatalf("frame %d: %d bytes, want %d", i, len(got[i]), len(bodies[i]))
				}
			}
			if _, err := f.Read(make([]byte, 4)); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last frame: %v, want EOF", err)
			}
		})
	}
}

// A frame longer than maxFrame ends the connection at its header, also
// when it arrives behind a request in the same write; a header cut short
// by the client's end of file is not a clean EOF.
func TestFrameReaderRefusesBeforeBuffering(t *testing.T) {
	srv, cli := unixPair(t)
	stream := append(frameOf([]byte{11}), binary.BigEndian.AppendUint32(nil, maxFrame+1)...)
	stream = append(stream, bytes.Repeat([]byte{1}, 100)...)
	if _, err := cli.Write(stream); err != nil {
		t.Fatal(err)
	}
	f := &frameReader{c: srv}
	if got := readFrames(t, f, 1)[0]; !bytes.Equal(got, []byte{11}) {
		t.Fatalf("first frame %x", got)
	}
	if _, err := f.Read(make([]byte, 4)); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversized frame: %v, want %v", err, errFrameTooLarge)
	}

	srv2, cli2 := unixPair(t)
	cli2.Write([]byte{0, 0})
	cli2.CloseWrite()
	f2 := &frameReader{c: srv2}
	if _, err := f2.Read(make([]byte, 4)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("half a header then EOF: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}
