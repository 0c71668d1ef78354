package peerlink

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/troupe-kv/troupe/storage"
)

func TestBatchRoundTrip(t *testing.T) {
	cmds := [][]byte{
		(&storage.Command{Op: storage.OpSet, Key: "a", Value: []byte("1")}).Encode(),
		{},
		bytes.Repeat([]byte("x"), 70000),
	}
	got, err := decodeBatch(encodeBatch(cmds))
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if got, err := decodeBatch(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty batch: %v %v", got, err)
	}
}

func TestDecodeBatchRejectsBadFraming(t *testing.T) {
	for name, b := range map[string][]byte{
		"length overruns": {5, 'a', 'b'},
		"bad varint":      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := decodeBatch(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	many := make([][]byte, MaxBatch+1)
	if _, err := decodeBatch(encodeBatch(many)); err == nil {
		t.Error("a batch over MaxBatch was accepted")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([][]byte{[]byte("abc"), nil, []byte("d")}))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := decodeBatch(b)
		if err != nil {
			return
		}
		if again := encodeBatch(cmds); !bytes.Equal(again, b) {
			// Varints have one canonical encoding per value only when
			// minimal; a decoded batch must at least decode the same.
			if d, err := decodeBatch(again); err != nil || !reflect.DeepEqual(d, cmds) {
				t.Fatalf("re-encoding changed the batch")
			}
		}
	})
}

func TestBatchItemReplyResult(t *testing.T) {
	if r, err := (BatchItemReply{Index: 7, OK: true}).Result(); err != nil || r.Index != 7 || !r.OK {
		t.Fatalf("ok reply: %+v %v", r, err)
	}
	if _, err := (BatchItemReply{Code: codeNotLeader, Error: "x"}).Result(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("not-leader reply: %v", err)
	}
	var re *RemoteError
	if _, err := (BatchItemReply{Error: "malformed command"}).Result(); !errors.As(err, &re) || re.Status != 400 {
		t.Fatalf("codeless error: %v", err)
	}
}
