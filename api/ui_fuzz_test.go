package api

import (
	"reflect"
	"testing"

	"github.com/troupe-kv/troupe/cluster"
)

// FuzzUIChaos: any body sent to POST /v1/ui/chaos is answered without a
// crash; a refused one (4xx) installs nothing and crashes nothing.
func FuzzUIChaos(f *testing.F) {
	for _, seed := range []string{
		`{"action":"partition","a":["n1"],"b":["n2"]}`,
		`{"action":"isolate","nodes":["n1"]}`,
		`{"action":"oneway","from":"*","to":"n1"}`,
		`{"action":"degrade","nodes":["n1"],"delay":"50ms","jitter":"5ms","drop":0.1}`,
		`{"action":"heal"}`,
		`{"action":"crash","nodes":["n1"],"actor":"raft","fault":"panic"}`,
		`{"action":"degrade","drop":-1}`,
		`{"action":"partition","a":["n1","n1"],"b":[]}`,
		`{"delay":"forever"}`,
		`[]`, ``, `{"action":`,
	} {
		f.Add([]byte(seed))
	}
	s, b := newAPI(f, withChaos)
	// One member only: every step of a plan lands on this node, none
	// goes over the network.
	b.set(func(fb *fakeBackend) { fb.members = []cluster.Member{{ID: "n1", Voter: true, Leader: true}} })
	f.Fuzz(func(t *testing.T, body []byte) {
		before, crashes := b.Faults(), len(b.crashes)
		w := call(t, s, "POST", "/v1/ui/chaos", body)
		switch {
		case w.Code >= 500 && w.Code != 502:
			t.Fatalf("%q: %d %s", body, w.Code, w.Body.String())
		case w.Code >= 400 && w.Code < 500:
			if after := b.Faults(); !reflect.DeepEqual(before, after) || len(b.crashes) != crashes {
				t.Fatalf("%q refused with %d but changed the node: %+v -> %+v", body, w.Code, before, after)
			}
		}
		_ = b.SetFaults(before)
	})
}
