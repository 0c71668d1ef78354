package storage

import (
	"bytes"
	"math"
	"reflect"
	"testing"
)

func TestEntry_EncodeDecode_RoundTrip(t *testing.T) {
	entries := []Entry{
		{Key: "k"},
		{Key: "k", Value: []byte("v"), Flags: semaphoreFlags, CreateIndex: 1, ModifyIndex: 2, LockIndex: 3, Session: "sess"},
		{Key: "\xff", Value: bytes.Repeat([]byte{0xff}, 70000), Flags: math.MaxUint64, CreateIndex: math.MaxUint64, ModifyIndex: math.MaxUint64, LockIndex: math.MaxUint64},
	}
	for _, e := range entries {
		data := encodeEntry(&e)
		got, err := decodeEntry([]byte(e.Key), data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip: %+v -> %+v", e, got)
		}
		if mi := entryModifyIndex(data); mi != e.ModifyIndex {
			t.Fatalf("entryModifyIndex = %d, want %d", mi, e.ModifyIndex)
		}
	}
}

// Stored entries outlive the binary that wrote them: the layout is pinned.
func TestEntry_Encode_Golden(t *testing.T) {
	e := Entry{Key: "ignored", Value: []byte("v"), Flags: 300, CreateIndex: 1, ModifyIndex: 2, LockIndex: 3, Session: "s"}
	want := []byte{1, 1, 2, 3, 0xac, 0x02, 1, 's', 'v'}
	if got := encodeEntry(&e); !bytes.Equal(got, want) {
		t.Fatalf("encodeEntry = %#v, want %#v", got, want)
	}
}

// bbolt's memory is only valid inside the transaction, so the decoded value
// must not alias the stored bytes.
func TestEntry_DecodeCopiesValue(t *testing.T) {
	data := encodeEntry(&Entry{Value: []byte("value"), Session: "s"})
	e, err := decodeEntry([]byte("k"), data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	if string(e.Value) != "value" || e.Session != "s" {
		t.Fatalf("decoded entry aliases its input: %+v", e)
	}
}

func TestDecodeEntry_Rejects(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		{},
		{2, 1, 1, 0, 0, 0},      // unknown version
		{1},                     // no indexes
		{1, 1, 1, 0, 0},         // no session length
		{1, 1, 1, 0, 0, 4, 's'}, // session overruns
		{1, 0x80},               // truncated varint
	} {
		if e, err := decodeEntry([]byte("k"), data); err == nil {
			t.Errorf("decodeEntry(%#v) = %+v, want an error", data, e)
		}
	}
	if got := entryModifyIndex([]byte{2, 1, 7}); got != 0 {
		t.Errorf("entryModifyIndex of an unknown version = %d, want 0", got)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add([]byte("k"), encodeEntry(&Entry{Value: []byte("v"), Flags: semaphoreFlags, CreateIndex: 1, ModifyIndex: 2, LockIndex: 3, Session: "s"}))
	f.Add([]byte("k"), encodeEntry(&Entry{}))
	f.Add([]byte{}, []byte{1, 0x80})
	f.Fuzz(func(t *testing.T, key, data []byte) {
		mi := entryModifyIndex(data) // must not panic either
		e, err := decodeEntry(key, data)
		if err != nil {
			return
		}
		if e.Key != string(key) {
			t.Fatalf("key %q decoded as %q", key, e.Key)
		}
		if mi != e.ModifyIndex {
			t.Fatalf("entryModifyIndex = %d, decodeEntry says %d", mi, e.ModifyIndex)
		}
		e2, err := decodeEntry(key, encodeEntry(&e))
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-decode differs: %+v vs %+v", e, e2)
		}
	})
}
