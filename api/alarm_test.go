package api

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/storage"
)

// TestNoSpaceAlarm: with a NOSPACE alarm raised, every write that would
// grow the state is refused with 507 and says why, not applied; reads,
// deletes and delete-only transactions go on, so an operator can free
// space. Disarmed through DELETE /v1/cluster/alarms, writes work again.
func TestNoSpaceAlarm(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "app/a", "1")
	put(t, s, "app/b", "2")
	if _, err := b.Apply(context.Background(), &storage.Command{Op: storage.OpAlarmRaise, Key: storage.AlarmKey(storage.AlarmNoSpace, "n2"), Value: []byte("over quota_bytes")}); err != nil {
		t.Fatal(err)
	}

	w := call(t, s, "GET", "/v1/cluster/alarms", nil)
	var alarms []storage.Alarm
	if err := json.Unmarshal(w.Body.Bytes(), &alarms); w.Code != 200 || err != nil || len(alarms) != 1 || alarms[0].Member != "n2" || alarms[0].Type != "nospace" {
		t.Fatalf("alarms: %d %s", w.Code, w.Body)
	}

	for _, r := range []struct{ method, target, body string }{
		{"PUT", "/v1/kv/app/a", "changed"},
		{"PUT", "/v1/kv/app/new?cas=0", "v"},
		{"PUT", "/v1/txn", `[{"KV":{"Verb":"delete","Key":"app/b"}},{"KV":{"Verb":"set","Key":"app/c","Value":"eA=="}}]`},
		{"PUT", "/v1/session/create", `{"Name":"n"}`},
	} {
		func() {
			// The refused entry is still applied, as a no-op on every
			// node: the data does not change.
			before := snapshotStore(t, b.store)
			defer func() {
				after := snapshotStore(t, b.store)
				if after.kvIndex != before.kvIndex || !reflect.DeepEqual(after.entries, before.entries) {
					t.Errorf("%s %s changed the data", r.method, r.target)
				}
			}()
			w := call(t, s, r.method, r.target, []byte(r.body))
			if w.Code != 507 || w.Header().Get(OutcomeHeader) != OutcomeNotApplied || w.Header().Get("Retry-After") != "" {
				t.Errorf("%s %s under the alarm: %d %s %q", r.method, r.target, w.Code, w.Header(), w.Body)
			}
			for _, part := range []string{"database space exceeded", "n2: over quota_bytes", "kvctl alarm disarm"} {
				if !strings.Contains(w.Body.String(), part) {
					t.Errorf("%s %s: %q does not say %q", r.method, r.target, w.Body, part)
				}
			}
		}()
	}

	wantStatus(t, call(t, s, "GET", "/v1/kv/app/a?raw", nil), 200, "1")
	wantStatus(t, call(t, s, "DELETE", "/v1/kv/app/a", nil), 200, "true")
	wantStatus(t, call(t, s, "PUT", "/v1/txn", []byte(`[{"KV":{"Verb":"delete-tree","Key":"app/"}}]`)), 200)
	wantStatus(t, call(t, s, "GET", "/v1/kv/app/b", nil), 404)

	for _, bad := range []string{"?type=corrupt", "?member=n1/x", "?node=n2"} {
		b.unchanged(t, "disarm "+bad, func() {
			wantStatus(t, call(t, s, "DELETE", "/v1/cluster/alarms"+bad, nil), 400)
		})
	}
	wantStatus(t, call(t, s, "DELETE", "/v1/cluster/alarms?type=nospace&member=n3", nil), 200, `"disarmed":false`)
	wantStatus(t, call(t, s, "DELETE", "/v1/cluster/alarms?member=n2", nil), 200, `"disarmed":true`)
	wantStatus(t, call(t, s, "GET", "/v1/cluster/alarms", nil), 200, "[]")
	wantStatus(t, call(t, s, "PUT", "/v1/kv/app/a", []byte("again")), 200, "true")
}

// TestDisarmParams: the disarm's parameters, as the fuzzers see them.
func TestDisarmParams(t *testing.T) {
	for target, ok := range map[string]bool{
		"":                             true,
		"?type=nospace":                true,
		"?member=n2":                   true,
		"?type=nospace&member=n2":      true,
		"?type=":                       true,
		"?type=NOSPACE":                false,
		"?member=a%2Fb":                false,
		"?member=a%20b":                false,
		"?type=nospace&type=corrupt&x": false,
	} {
		s, _ := newAPI(t)
		w := call(t, s, "DELETE", "/v1/cluster/alarms"+target, nil)
		if (w.Code == 200) != ok {
			t.Errorf("DELETE /v1/cluster/alarms%s: %d %s", target, w.Code, w.Body)
		}
	}
}
