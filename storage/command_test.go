package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// semaphoreFlags is the flag value api.Semaphore writes; it is above
// math.MaxInt64, so any signed conversion on the way corrupts it.
const semaphoreFlags uint64 = 16210313421097356768

var allOps = []Op{OpSet, OpCAS, OpDelete, OpDeleteCAS, OpDeleteTree, OpRegisterNode, OpDeregisterNode, OpNoop,
	OpACLSetPolicy, OpACLDeletePolicy, OpACLSetToken, OpACLDeleteToken, OpACLBootstrap, OpTxn, OpSetClusterID,
	OpCheckpoint, OpSessionCreate, OpSessionDestroy, OpReapTombstones,
	OpAlarmRaise, OpAlarmClear}

func commandsEqual(a, b *Command) bool {
	if len(a.Txn) != len(b.Txn) {
		return false
	}
	for i := range a.Txn {
		x, y := a.Txn[i], b.Txn[i]
		if x.Verb != y.Verb || x.Key != y.Key || !bytes.Equal(x.Value, y.Value) || x.Flags != y.Flags || x.Index != y.Index || x.Session != y.Session {
			return false
		}
	}
	return a.Op == b.Op && a.Key == b.Key && bytes.Equal(a.Value, b.Value) &&
		a.Flags == b.Flags && a.Index == b.Index && a.Session == b.Session
}

// sampleTxn has every verb once, with the awkward field values.
func sampleTxn(big []byte) []TxnOp {
	var ops []TxnOp
	for v := TxnSet; v <= txnVerbLast; v++ {
		ops = append(ops, TxnOp{Verb: v, Key: fmt.Sprintf("k/%d", v), Value: []byte{byte(v), 0, 0xff}, Flags: semaphoreFlags, Index: uint64(v) << 40, Session: "s"})
	}
	return append(ops, TxnOp{Verb: TxnSet}, TxnOp{Verb: TxnGet, Key: "\x00\xff/ü", Value: big, Flags: math.MaxUint64, Index: math.MaxUint64, Session: strings.Repeat("s", 200)})
}

// sampleCommands covers every op and the awkward field values.
func sampleCommands() []*Command {
	big := bytes.Repeat([]byte{0, 1, 2, 0xfe, 0xff}, 1<<18) // 1.25 MiB, binary
	var cmds []*Command
	for _, op := range allOps {
		cmds = append(cmds,
			&Command{Op: op},
			&Command{Op: op, Key: "k", Value: []byte{}},
			&Command{Op: op, Key: "svc/leader", Value: []byte("host-1"), Flags: semaphoreFlags, Index: 57, Session: "0a2b4c6d-1111-2222-3333-444455556666"},
			&Command{Op: op, Key: "\x00\xff/ü", Value: []byte{0}, Flags: math.MaxUint64, Index: math.MaxUint64},
			&Command{Op: op, Key: strings.Repeat("k", 300), Value: big, Flags: 1 << 63, Index: 1<<63 + 1, Session: strings.Repeat("s", 200)},
		)
	}
	for _, c := range cmds {
		if c.Op == OpTxn {
			// A transaction carries operations where others carry a value.
			c.Value = nil
			if len(c.Key) > 1 {
				c.Txn = sampleTxn(big)
			} else if c.Key == "k" {
				c.Txn = sampleTxn(nil)
			}
		}
	}
	return cmds
}

func TestCommand_EncodeDecode_RoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		data := c.Encode()
		got, err := DecodeCommand(data)
		if err != nil {
			t.Fatalf("%v key %.20q: decode: %v", c.Op, c.Key, err)
		}
		if !commandsEqual(got, c) {
			t.Fatalf("%v key %.20q: round trip gave %+v", c.Op, c.Key, got)
		}
		// AppendEncode after existing bytes leaves them alone and appends
		// exactly what Encode produces.
		prefix := []byte("hdr")
		appended := c.AppendEncode(append([]byte(nil), prefix...))
		if !bytes.HasPrefix(appended, prefix) || !bytes.Equal(appended[len(prefix):], data) {
			t.Fatalf("%v: AppendEncode differs from Encode", c.Op)
		}
	}
}

func TestCommand_FlagsAboveInt64Max(t *testing.T) {
	for _, flags := range []uint64{semaphoreFlags, 3304740253564472344, math.MaxInt64 + 1, math.MaxUint64} {
		got, err := DecodeCommand((&Command{Op: OpSet, Key: "k", Flags: flags}).Encode())
		if err != nil {
			t.Fatal(err)
		}
		if got.Flags != flags {
			t.Fatalf("flags %d decoded as %d", flags, got.Flags)
		}
	}
}

func TestCommand_EmptyValueDecodesAsNil(t *testing.T) {
	for _, v := range [][]byte{nil, {}} {
		got, err := DecodeCommand((&Command{Op: OpSet, Key: "k", Value: v}).Encode())
		if err != nil {
			t.Fatal(err)
		}
		if got.Value != nil {
			t.Fatalf("value %#v decoded as %#v, want nil", v, got.Value)
		}
	}
}

// The encoding is part of the Raft log format: a change here makes old logs
// unreadable, so it is pinned byte for byte.
func TestCommand_Encode_Golden(t *testing.T) {
	c := &Command{Op: OpCAS, Key: "k", Value: []byte("v"), Flags: 300, Index: 5, Session: "s"}
	want := []byte{1, 2, 0xac, 0x02, 5, 1, 'k', 1, 's', 'v'}
	if got := c.Encode(); !bytes.Equal(got, want) {
		t.Fatalf("Encode = %#v, want %#v", got, want)
	}
	ops := map[Op]uint8{OpSet: 1, OpCAS: 2, OpDelete: 3, OpDeleteCAS: 4, OpDeleteTree: 5, OpRegisterNode: 6, OpDeregisterNode: 7, OpNoop: 8,
		OpACLSetPolicy: 9, OpACLDeletePolicy: 10, OpACLSetToken: 11, OpACLDeleteToken: 12, OpACLBootstrap: 13, OpTxn: 14}
	for op, n := range ops {
		if uint8(op) != n {
			t.Errorf("%v renumbered to %d, want %d", op, uint8(op), n)
		}
	}
}

func TestCommand_DecodeCopiesKeyAndSession(t *testing.T) {
	data := (&Command{Op: OpSet, Key: "key", Session: "sess", Value: []byte("val")}).Encode()
	c, err := DecodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'X'
	}
	if c.Key != "key" || c.Session != "sess" {
		t.Fatalf("key/session alias the input: %q %q", c.Key, c.Session)
	}
}

func TestDecodeCommand_Rejects(t *testing.T) {
	valid := (&Command{Op: OpSet, Key: "abc", Session: "sess", Value: []byte("v")}).Encode()
	overflow := []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0} // 2^64 and more
	tooLong := append([]byte{1, 1}, bytes.Repeat([]byte{0x80}, 11)...)
	huge := append([]byte{1, 1, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01) // key length 2^64-1
	cases := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"one byte", []byte{1}},
		{"version 0", append([]byte{0}, valid[1:]...)},
		{"version 2", append([]byte{2}, valid[1:]...)},
		{"op 0", []byte{1, 0, 0, 0, 0, 0}},
		{"op past the last", []byte{1, byte(opLast + 1), 0, 0, 0, 0}},
		{"op 255", []byte{1, 255, 0, 0, 0, 0}},
		{"no flags", []byte{1, 1}},
		{"truncated flags varint", []byte{1, 1, 0x80}},
		{"overflowing flags varint", overflow},
		{"eleven byte varint", tooLong},
		{"no index", []byte{1, 1, 0}},
		{"truncated index varint", []byte{1, 1, 0, 0xff}},
		{"no key length", []byte{1, 1, 0, 0}},
		{"key overruns input", []byte{1, 1, 0, 0, 5, 'a', 'b'}},
		{"key overruns input by one byte", []byte{1, 1, 0, 0, 3, 'a', 'b'}},
		{"key length 2^64-1", huge},
		{"no session length", []byte{1, 1, 0, 0, 1, 'k'}},
		{"session overruns input", []byte{1, 1, 0, 0, 1, 'k', 3, 's'}},
		{"session overruns input by one byte", []byte{1, 1, 0, 0, 1, 'k', 2, 's'}},
		{"truncated session length", []byte{1, 1, 0, 0, 1, 'k', 0x80}},
		{"valid command cut short", valid[:len(valid)-3]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeCommand(tc.data)
			if err == nil {
				t.Fatalf("decoded %+v, want an error", c)
			}
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			if c != nil {
				t.Fatalf("returned a command with the error: %+v", c)
			}
		})
	}
}

func TestOp_String(t *testing.T) {
	seen := map[string]bool{}
	for _, op := range allOps {
		s := op.String()
		if strings.HasPrefix(s, "op(") || seen[s] {
			t.Errorf("%d has name %q", op, s)
		}
		seen[s] = true
	}
	if got := Op(42).String(); got != "op(42)" {
		t.Errorf("Op(42) = %q", got)
	}
}

func TestCommand_EncodeAllocatesOnce(t *testing.T) {
	c := &Command{Op: OpSet, Key: "some/key", Value: make([]byte, 100), Flags: semaphoreFlags, Session: "s"}
	if n := testing.AllocsPerRun(100, func() { _ = c.Encode() }); n != 1 {
		t.Fatalf("Encode made %v allocations, want 1 (its capacity estimate is short)", n)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		if len(c.Value) < 1024 {
			f.Add(c.Encode())
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0x80, 0x00, 0, 0, 0}) // non-canonical varint
	f.Add([]byte{1, 1, 0, 0, 5, 'a'})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		c, err := DecodeCommand(data)
		if !bytes.Equal(in, data) {
			t.Fatal("DecodeCommand modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrBadCommand) || c != nil {
				t.Fatalf("bad failure: %v, %+v", err, c)
			}
			return
		}
		if c.Op < OpSet || c.Op > opLast {
			t.Fatalf("decoded unknown op %d", c.Op)
		}
		re := c.Encode()
		// Re-encoding is canonical (minimal varints), so never longer.
		if len(re) > len(data) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(data), len(re))
		}
		c2, err := DecodeCommand(re)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !commandsEqual(c, c2) {
			t.Fatalf("re-decode differs: %+v vs %+v", c, c2)
		}
		if re2 := c2.Encode(); !bytes.Equal(re, re2) {
			t.Fatal("encoding is not stable")
		}
	})
}

func FuzzCommandRoundTrip(f *testing.F) {
	f.Add(uint8(OpSet), "k", []byte("v"), semaphoreFlags, uint64(0), "")
	f.Add(uint8(OpCAS), "", []byte(nil), uint64(math.MaxUint64), uint64(math.MaxUint64), "sess")
	f.Add(uint8(8), "k", []byte("v"), uint64(1), uint64(2), "s")
	f.Fuzz(func(t *testing.T, op uint8, key string, value []byte, flags, index uint64, session string) {
		c := &Command{Op: Op(op%8 + 1), Key: key, Value: value, Flags: flags, Index: index, Session: session}
		if op%9 == 8 {
			// A transaction of one op per verb the inputs pick, each
			// carrying the fuzzed fields in a different order.
			c = &Command{Op: OpTxn, Key: key, Flags: flags, Index: index, Session: session}
			for i, v := range value {
				c.Txn = append(c.Txn, TxnOp{Verb: TxnVerb(v%uint8(txnVerbLast) + 1), Key: session, Value: value[i:], Flags: index, Index: flags + uint64(i), Session: key})
			}
		}
		got, err := DecodeCommand(c.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if !commandsEqual(c, got) {
			t.Fatalf("round trip: %+v -> %+v", c, got)
		}
	})
}

func BenchmarkCommandEncode(b *testing.B) {
	c := &Command{Op: OpSet, Key: "service/web/config/entry-0042", Value: bytes.Repeat([]byte("v"), 100), Flags: semaphoreFlags}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = c.Encode()
		}
	})
	b.Run("AppendEncode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf = c.AppendEncode(buf[:0])
		}
	})
}

func BenchmarkCommandDecode(b *testing.B) {
	data := (&Command{Op: OpSet, Key: "service/web/config/entry-0042", Value: bytes.Repeat([]byte("v"), 100), Flags: semaphoreFlags}).Encode()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeCommand(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUnassignedOpIsRefused: an op number this release does not apply is
// refused at decoding, so it can never reach the state machine (where it
// would stop every node that meets it).
func TestUnassignedOpIsRefused(t *testing.T) {
	for op := opLast + 1; op != 0 && op < opLast+3; op++ {
		if _, err := DecodeCommand((&Command{Op: op, Key: "k"}).Encode()); !errors.Is(err, ErrBadCommand) {
			t.Errorf("op %d decoded: %v", op, err)
		}
	}
	for op := OpSet; op <= opLast; op++ {
		_, err := DecodeCommand((&Command{Op: op, Key: "k"}).Encode())
		if known := slices.Contains(allOps, op); known != (err == nil) {
			t.Errorf("op %d: listed %v, decodes with %v", op, known, err)
		}
	}
}
