package storage

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// model is a plain-map reference implementation of the KV rules of the
// Consul KV brief, §2.5, without any index bookkeeping beyond entries.
type model struct {
	kv      map[string]Entry
	kvIndex uint64
	nodes   map[string]string
}

func (m *model) set(idx uint64, key string, value []byte, flags uint64) bool {
	if len(value) == 0 {
		value = nil
	}
	e, ok := m.kv[key]
	if ok && e.Flags == flags && bytes.Equal(e.Value, value) {
		return false
	}
	if !ok {
		e = Entry{Key: key, CreateIndex: idx}
	}
	e.Value, e.Flags, e.ModifyIndex = bytes.Clone(value), flags, idx
	m.kv[key] = e
	m.kvIndex = idx
	return true
}

func (m *model) del(idx uint64, key string) {
	delete(m.kv, key)
	m.kvIndex = idx
}

// apply returns the expected Result.OK and the keys whose entry changed.
func (m *model) apply(idx uint64, c *Command) (bool, []string) {
	if c == nil {
		return false, nil
	}
	validKey := len(c.Key) > 0 && len(c.Key) <= MaxKeySize
	e, exists := m.kv[c.Key]
	switch c.Op {
	case OpSet, OpCAS:
		if !validKey {
			return false, nil
		}
		if c.Op == OpCAS && (c.Index == 0 && exists || c.Index != 0 && (!exists || e.ModifyIndex != c.Index)) {
			return false, nil
		}
		if m.set(idx, c.Key, c.Value, c.Flags) {
			return true, []string{c.Key}
		}
		return true, nil
	case OpDelete:
		if exists {
			m.del(idx, c.Key)
			return true, []string{c.Key}
		}
		return true, nil
	case OpDeleteCAS:
		if !exists {
			return true, nil
		}
		if e.ModifyIndex != c.Index {
			return false, nil
		}
		m.del(idx, c.Key)
		return true, []string{c.Key}
	case OpDeleteTree:
		var gone []string
		for k := range m.kv {
			if strings.HasPrefix(k, c.Key) {
				gone = append(gone, k)
				m.del(idx, k)
			}
		}
		return true, gone
	case OpRegisterNode:
		if !validKey {
			return false, nil
		}
		m.nodes[c.Key] = string(c.Value)
		return true, nil
	case OpDeregisterNode:
		delete(m.nodes, c.Key)
		return true, nil
	case OpNoop, OpReapTombstones:
		// Reaping changes no key; what it may do to indexes is what the
		// prefix-index checks below are about.
		return true, nil
	}
	panic("unknown op")
}

func (m *model) sortedKeys(prefix string) []string {
	var keys []string
	for k := range m.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// folded is the Consul ?keys&separator listing, computed the obvious way.
func folded(keys []string, prefix, sep string) []string {
	var out []string
	for _, k := range keys {
		if i := strings.Index(k[len(prefix):], sep); i >= 0 {
			k = k[:len(prefix)+i+len(sep)]
		}
		if len(out) == 0 || out[len(out)-1] != k {
			out = append(out, k)
		}
	}
	return out
}

// allStrings lists every string over alphabet of length lo..hi.
func allStrings(alphabet string, lo, hi int) []string {
	out := []string{}
	cur := []string{""}
	for n := 0; n <= hi; n++ {
		if n >= lo {
			out = append(out, cur...)
		}
		var next []string
		for _, s := range cur {
			for _, c := range alphabet {
				next = append(next, s+string(c))
			}
		}
		cur = next
	}
	return out
}

// TestStore_Model runs random batches against the store and the model and
// checks, after each batch: every entry and result; Get's index; Keys with
// and without separator; and the prefix-index contract of blocking queries
// for every prefix: List and Keys agree, the index never goes backwards,
// never exceeds the KV-wide index, and is at least the index of the last
// write that changed a key under the prefix (so blocked readers wake).
func TestStore_Model(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	keys := allStrings("ab/", 1, 3)
	prefixes := allStrings("ab/", 0, 3)
	values := [][]byte{nil, []byte("x"), []byte("y")}
	flagsSet := []uint64{0, 1, semaphoreFlags}

	s := openStore(t)
	m := &model{kv: map[string]Entry{}, nodes: map[string]string{}}
	lastChange := map[string]uint64{}
	prevIndex := map[string]uint64{}
	idx := uint64(0)
	var recent [][]Applied

	randomIndex := func(key string) uint64 {
		switch rng.IntN(3) {
		case 0:
			return 0
		case 1:
			if e, ok := m.kv[key]; ok {
				return e.ModifyIndex
			}
		}
		return rng.Uint64N(idx + 2)
	}
	randomCommand := func() *Command {
		key := keys[rng.IntN(len(keys))]
		switch r := rng.IntN(100); {
		case r < 3:
			return nil
		case r < 4:
			return set("", "x", 0)
		case r < 40:
			return &Command{Op: OpSet, Key: key, Value: values[rng.IntN(3)], Flags: flagsSet[rng.IntN(3)]}
		case r < 55:
			return &Command{Op: OpCAS, Key: key, Value: values[rng.IntN(3)], Flags: flagsSet[rng.IntN(3)], Index: randomIndex(key)}
		case r < 70:
			return &Command{Op: OpDelete, Key: key}
		case r < 80:
			return &Command{Op: OpDeleteCAS, Key: key, Index: randomIndex(key)}
		case r < 90:
			p := prefixes[1+rng.IntN(12)] // lengths 1 and 2
			if rng.IntN(20) == 0 {
				p = ""
			}
			return &Command{Op: OpDeleteTree, Key: p}
		case r < 94:
			return &Command{Op: OpRegisterNode, Key: key, Value: values[1+rng.IntN(2)]}
		case r < 97:
			return &Command{Op: OpDeregisterNode, Key: key}
		case r < 99:
			return &Command{Op: OpReapTombstones, Index: rng.Uint64N(idx + 2)}
		default:
			return &Command{Op: OpNoop}
		}
	}

	for step := range 400 {
		batch := make([]Applied, 1+rng.IntN(6))
		wantOK := make([]bool, len(batch))
		for i := range batch {
			idx++
			c := randomCommand()
			batch[i] = Applied{Index: idx, Cmd: c}
			ok, changed := m.apply(idx, c)
			wantOK[i] = ok
			for _, k := range changed {
				for _, p := range prefixes {
					if strings.HasPrefix(k, p) {
						lastChange[p] = idx
					}
				}
			}
		}
		res := mustApplyBatch(t, s, batch)
		for i := range res {
			if res[i].Index != batch[i].Index || res[i].OK != wantOK[i] {
				t.Fatalf("step %d: %+v gave %+v, want OK=%v", step, batch[i].Cmd, res[i], wantOK[i])
			}
		}
		if s.AppliedIndex() != idx {
			t.Fatalf("step %d: AppliedIndex %d, want %d", step, s.AppliedIndex(), idx)
		}

		entries, kvIdx, err := s.List("")
		if err != nil {
			t.Fatal(err)
		}
		var want []Entry
		for _, k := range m.sortedKeys("") {
			want = append(want, m.kv[k])
		}
		if !reflect.DeepEqual(entries, want) {
			t.Fatalf("step %d: entries\n got %+v\nwant %+v", step, entries, want)
		}
		if kvIdx != m.kvIndex || mustKVIndex(t, s) != m.kvIndex {
			t.Fatalf("step %d: KV-wide index %d, want %d", step, kvIdx, m.kvIndex)
		}
		for _, k := range keys {
			e, found, gi := mustGet(t, s, k)
			me, mfound := m.kv[k]
			if found != mfound || found && !reflect.DeepEqual(e, me) {
				t.Fatalf("step %d: Get(%q) = %+v %v, want %+v %v", step, k, e, found, me, mfound)
			}
			if wantIdx := m.kvIndex; found && gi != e.ModifyIndex || !found && gi != wantIdx {
				t.Fatalf("step %d: Get(%q) index %d", step, k, gi)
			}
		}
		nodes, err := s.NodeAddrs()
		if err != nil || !reflect.DeepEqual(nodes, m.nodes) {
			t.Fatalf("step %d: nodes %v, want %v (%v)", step, nodes, m.nodes, err)
		}

		for _, p := range prefixes {
			li := listIndex(t, s, p)
			plain, ki := mustKeys(t, s, p, "")
			fold, fi := mustKeys(t, s, p, "/")
			if li != ki || li != fi {
				t.Fatalf("step %d: prefix %q: List index %d, Keys %d, Keys with separator %d", step, p, li, ki, fi)
			}
			mk := m.sortedKeys(p)
			if !slices.Equal(plain, mk) {
				t.Fatalf("step %d: Keys(%q) = %q, want %q", step, p, plain, mk)
			}
			if wf := folded(mk, p, "/"); !slices.Equal(fold, wf) {
				t.Fatalf("step %d: Keys(%q, /) = %q, want %q", step, p, fold, wf)
			}
			var live uint64
			for _, k := range mk {
				live = max(live, m.kv[k].ModifyIndex)
			}
			switch {
			case p == "" && li != m.kvIndex:
				t.Fatalf("step %d: empty prefix index %d, want KV-wide %d", step, li, m.kvIndex)
			case li > m.kvIndex:
				t.Fatalf("step %d: prefix %q index %d above the KV-wide %d", step, p, li, m.kvIndex)
			case li < live:
				t.Fatalf("step %d: prefix %q index %d below its newest key %d", step, p, li, live)
			case li < prevIndex[p]:
				t.Fatalf("step %d: prefix %q index went backwards: %d -> %d", step, p, prevIndex[p], li)
			case li < lastChange[p]:
				t.Fatalf("step %d: prefix %q index %d misses the change at %d", step, p, li, lastChange[p])
			}
			prevIndex[p] = li
		}

		recent = append(recent, batch)
		if len(recent) > 3 {
			recent = recent[1:]
		}
		if step%50 == 49 {
			// Restart and replay the last few batches: nothing changes.
			before := dumpRaw(t, s)
			path := s.Path()
			s.Close()
			s = openAt(t, path)
			for _, b := range recent {
				mustApplyBatch(t, s, b)
			}
			requireSameState(t, dumpRaw(t, s), before)
		}
		if step%70 == 69 {
			// A snapshot restored elsewhere is the same state, byte for byte.
			dst := openStore(t)
			if err := dst.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
				t.Fatal(err)
			}
			requireSameState(t, dumpRaw(t, dst), dumpRaw(t, s))
			dst.Close()
		}
	}
}

// FuzzApply applies arbitrary commands to one store: applying must never
// panic (a panic stops the replica, and every replica on the same entry), and
// each result must be what the command's rules say.
func FuzzApply(f *testing.F) {
	for i := range allOps {
		f.Add(uint8(i), "k", []byte("v"), semaphoreFlags, uint64(0))
		f.Add(uint8(i), "", []byte{}, uint64(0), uint64(1))
	}
	f.Add(uint8(slices.Index(allOps, OpSet)), strings.Repeat("k", MaxKeySize+1), []byte("v"), uint64(0), uint64(0))
	f.Add(uint8(0), "k", []byte(nil), uint64(0), uint64(0))
	f.Add(uint8(slices.Index(allOps, OpACLSetToken)), "acc", EncodeACLToken(ACLToken{AccessorID: "acc", SecretHash: HashSecret("s")}), uint64(0), uint64(0))
	f.Add(uint8(slices.Index(allOps, OpACLSetPolicy)), "p", EncodeACLPolicy(ACLPolicy{ID: "p", Name: "n"}), uint64(0), uint64(0))
	s := openStore(f)
	idx := uint64(0)
	f.Fuzz(func(t *testing.T, op uint8, key string, value []byte, flags, index uint64) {
		c := &Command{Op: allOps[int(op)%len(allOps)], Key: key, Value: value, Flags: flags, Index: index}
		// Through the log encoding, as the cluster will feed it.
		c, err := DecodeCommand(c.Encode())
		if err != nil {
			t.Fatal(err)
		}
		before, found, _, err := s.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		idx++
		res := mustApply(t, s, idx, c)
		if s.AppliedIndex() != idx {
			t.Fatalf("AppliedIndex %d, want %d", s.AppliedIndex(), idx)
		}
		after, foundAfter, _, err := s.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		validKey := len(key) > 0 && len(key) <= MaxKeySize
		switch c.Op {
		case OpSet, OpCAS:
			wantOK := validKey && (c.Op == OpSet || c.Index == 0 && !found || c.Index != 0 && found && before.ModifyIndex == c.Index)
			if res.OK != wantOK {
				t.Fatalf("%v on %d-byte key (found %v, ModifyIndex %d, cas %d): OK=%v", c.Op, len(key), found, before.ModifyIndex, c.Index, res.OK)
			}
			if res.OK && (!foundAfter || !bytes.Equal(after.Value, value) || after.Flags != flags) {
				t.Fatalf("after %v: %+v found=%v", c.Op, after, foundAfter)
			}
			if !res.OK && (found != foundAfter || !reflect.DeepEqual(before, after)) {
				t.Fatalf("refused %v changed the entry: %+v -> %+v", c.Op, before, after)
			}
		case OpDelete, OpDeleteTree:
			if !res.OK || foundAfter {
				t.Fatalf("%v: OK=%v, key still there: %v", c.Op, res.OK, foundAfter)
			}
		case OpDeleteCAS:
			if wantOK := !found || before.ModifyIndex == c.Index; res.OK != wantOK || res.OK && foundAfter {
				t.Fatalf("delete-cas: OK=%v want %v, found after %v", res.OK, wantOK, foundAfter)
			}
		}
		if c.Op >= OpACLSetPolicy {
			// ACL commands never touch keys, and whatever they carry, the
			// tables must stay readable.
			if found != foundAfter || !reflect.DeepEqual(before, after) {
				t.Fatalf("%v changed key %q", c.Op, key)
			}
			if _, err := s.ACLTokens(); err != nil {
				t.Fatalf("after %v: %v", c.Op, err)
			}
			if _, err := s.ACLPolicies(); err != nil {
				t.Fatalf("after %v: %v", c.Op, err)
			}
		}
		if kv := mustKVIndex(t, s); kv > idx {
			t.Fatalf("KVIndex %d above the applied index %d", kv, idx)
		}
	})
}
