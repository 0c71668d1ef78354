package faultnet

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestAcceptedConnKnowsCaller: the preamble tells the accepting side who
// called, which is what per-peer "in" rules act on: a cut of peer a holds
// a's messages and lets b's through on the same listener.
func TestAcceptedConnKnowsCaller(t *testing.T) {
	a, b, l := newNode(t, "a"), newNode(t, "b"), newNode(t, "l")
	know(a, b, l)
	mustSetRules(t, l.net, cut("a", In))

	ca, sa := connect(t, a, l)
	cb, sb := connect(t, b, l)
	for _, c := range []net.Conn{ca, cb} {
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
	}

	expectBytes(t, sb, []byte("hello"))
	if got := sb.(*conn).peer; got != "b" {
		t.Fatalf("accepted conn from b names its peer %q", got)
	}

	_ = sa.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := sa.Read(make([]byte, 5))
	expectCutTimeout(t, err, "read from cut peer a")
	if got := sa.(*conn).peer; got != "a" {
		t.Fatalf("accepted conn from a names its peer %q", got)
	}
}

func TestDataFlowsBothWaysWithoutRules(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	client, server := connect(t, a, b)

	up := make([]byte, 256<<10)
	down := make([]byte, 256<<10)
	rand.Read(up)
	rand.Read(down)

	// Both directions at once, so neither side relies on the other having
	// finished; large enough to need many reads and writes.
	w1 := goWrite(client, up)
	w2 := goWrite(server, down)
	expectBytes(t, server, up)
	expectBytes(t, client, down)
	for _, r := range []ioResult{await(t, w1, "client write"), await(t, w2, "server write")} {
		if r.err != nil || r.n != len(up) {
			t.Fatalf("write: %d, %v", r.n, r.err)
		}
	}

	// Closing one end is seen by the other as the end of the stream.
	client.Close()
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the client closed, server read: %v, want EOF", err)
	}
}

// TestConnWithoutPreambleIsRejected: a stray client (HTTP sent to the Raft
// port, or a dial without the preamble) gets its connection closed and the
// accepting side never hands its bytes on as data.
func TestConnWithoutPreambleIsRejected(t *testing.T) {
	for name, dial := range map[string]func(t *testing.T, l *node) net.Conn{
		"http request": func(t *testing.T, l *node) net.Conn {
			c, err := net.Dial("tcp", l.addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			return c
		},
		"faultnet dial without preamble": func(t *testing.T, l *node) net.Conn {
			c, err := New("a").Dial(t.Context(), l.addr, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("hello, raft")); err != nil {
				t.Fatal(err)
			}
			return c
		},
		"truncated id": func(t *testing.T, l *node) net.Conn {
			c, err := net.Dial("tcp", l.addr)
			if err != nil {
				t.Fatal(err)
			}
			// Announces a 10-byte id, sends 3 and hangs up.
			if _, err := c.Write([]byte(preambleMagic + "\x0aabc")); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := newNode(t, "l")
			client := dial(t, l)
			defer client.Close()
			server, err := l.ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			_ = server.SetReadDeadline(time.Now().Add(waitFor))
			buf := make([]byte, 64)
			n, err := server.Read(buf)
			if err == nil {
				t.Fatalf("accepted conn delivered %q without a valid preamble", buf[:n])
			}
			if _, err := server.Write([]byte("x")); err == nil {
				t.Fatal("write on a rejected conn succeeded")
			}
			if name != "truncated id" {
				expectClosedByPeer(t, client)
			}
			l.net.mu.Lock()
			registered := len(l.net.conns)
			l.net.mu.Unlock()
			if registered != 0 {
				t.Fatalf("a rejected conn stays registered: %d conns", registered)
			}
		})
	}
}

// preambleBytes is what writePreamble puts on the wire for id.
func preambleBytes(t testing.TB, id string) []byte {
	t.Helper()
	var rec recorder
	if err := writePreamble(&rec, id); err != nil {
		t.Fatalf("writePreamble(%q): %v", id, err)
	}
	return rec.Bytes()
}

// recorder is the part of net.Conn writePreamble uses.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error)      { return r.buf.Write(b) }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }
func (r *recorder) Bytes() []byte                    { return r.buf.Bytes() }

func TestPreambleRoundTrip(t *testing.T) {
	for _, id := range []string{"", "n1", strings.Repeat("x", 127), strings.Repeat("y", 128), strings.Repeat("z", maxIDLen), "nœud-ü"} {
		wire := preambleBytes(t, id)
		br := bufio.NewReader(bytes.NewReader(append(wire, "rest"...)))
		got, err := readPreamble(br)
		if err != nil || got != id {
			t.Fatalf("id of %d bytes: read %q, %v", len(id), got, err)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != "rest" {
			t.Fatalf("id of %d bytes: preamble consumed too much or too little: rest %q", len(id), rest)
		}
	}
	var rec recorder
	if err := writePreamble(&rec, strings.Repeat("x", maxIDLen+1)); err == nil {
		t.Fatal("writePreamble accepted an id longer than 255 bytes")
	}
	if rec.buf.Len() != 0 {
		t.Fatalf("a refused preamble still wrote %d bytes", rec.buf.Len())
	}
}

// FuzzReadPreamble: readPreamble never panics, and it accepts an input
// exactly when the input starts with what writePreamble produces for the
// id it returns, consuming nothing past it.
func FuzzReadPreamble(f *testing.F) {
	f.Add([]byte(preambleMagic + "\x02n1"))
	f.Add([]byte(preambleMagic + "\x00"))
	f.Add([]byte(preambleMagic + "\xc3\xbf" + strings.Repeat("a", 255)))
	f.Add([]byte(preambleMagic + "\xc4\x80" + strings.Repeat("a", 256)))
	f.Add([]byte(preambleMagic + "\xff"))
	f.Add([]byte(preambleMagic + "\xc0\x82ab"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("TRP"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		id, err := readPreamble(br)
		if err == nil {
			want := preambleBytes(t, id)
			if !bytes.HasPrefix(data, want) {
				t.Fatalf("readPreamble accepted %q as id %q, but writePreamble would send %q", data, id, want)
			}
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, data[len(want):]) {
				t.Fatalf("readPreamble consumed %d bytes, preamble is %d", len(data)-len(rest), len(want))
			}
		}

		// And everything writePreamble produces reads back, whatever
		// follows it.
		cand := string(data[:min(len(data), maxIDLen)])
		wire := append(preambleBytes(t, cand), data...)
		br = bufio.NewReader(bytes.NewReader(wire))
		got, err := readPreamble(br)
		if err != nil || got != cand {
			t.Fatalf("round trip of %q: got %q, %v", cand, got, err)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data) {
			t.Fatalf("round trip of %q left %q, want %q", cand, rest, data)
		}
	})
}
