package client_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/api"
	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// The client keeps its own copies of the server's JSON types so tools do
// not link Raft. These tests catch the copies drifting: every field the
// server sends must land in a client field of the same value. Fault rules
// need no copy: the client uses cluster/faultnet's own types, which link
// nothing of Raft.
func decodeStrict(t *testing.T, server any, into any) {
	t.Helper()
	data, err := json.Marshal(server)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("client type does not match the server's %T: %v\n%s", server, err, data)
	}
	back, err := json.Marshal(into)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, back) {
		t.Fatalf("round trip through the client type changed the JSON:\nserver %s\nclient %s", data, back)
	}
}

func TestParity_ServerTypes(t *testing.T) {
	decodeStrict(t, api.KVPair{LockIndex: 1, Key: "k", Flags: semaphoreFlags, Value: []byte("v"), Session: "s", CreateIndex: 2, ModifyIndex: 3}, &client.KVPair{})
	decodeStrict(t, cluster.Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h", Voter: true, Leader: true, Version: "v1"}, &client.Member{})
	decodeStrict(t, cluster.Status{ID: "n1", State: "Leader", Term: 1, CommitIndex: 2, AppliedIndex: 3, LastLogIndex: 4,
		LastSnapshotIndex: 5, LastContactMS: 6, LeaderID: "n1", LeaderRaftAddr: "r", LeaderHTTPAddr: "h",
		Version: "v1", Commit: "c", GoVersion: "go"}, &client.Status{})
	decodeStrict(t, peerlink.JoinRequest{ID: "n4", RaftAddr: "r"}, &client.JoinRequest{})
	decodeStrict(t, api.TxnResponse{Results: []api.TxnResult{{KV: &api.KVPair{Key: "k", Flags: semaphoreFlags, Value: []byte("v"), ModifyIndex: 3}}}}, &client.TxnResponse{})
	decodeStrict(t, api.TxnResponse{Errors: []api.TxnError{{OpIndex: 2, What: "missing session"}}}, &client.TxnResponse{})
	decodeStrict(t, api.SessionEntry{ID: "s", Name: "n", Node: "n1", LockDelay: 15 * time.Second, Behavior: "release", TTL: "10s", NodeChecks: []string{"serfHealth"}, CreateIndex: 4, ModifyIndex: 4}, &client.Session{})
	if client.OutcomeHeader != api.OutcomeHeader || client.OutcomeNotApplied != api.OutcomeNotApplied || client.OutcomeUnknown != api.OutcomeUnknown {
		t.Fatal("outcome header or values differ from package api")
	}
}

func TestParity_HealthAndChaosTypes(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC)
	peer := cluster.PeerStatus{ID: "n2", RaftAddr: "r", HTTPAddr: "h", State: cluster.PeerSuspect, Phi: 3.25, LastHeard: at,
		RTTMeanMS: 0.75, RTTStdDevMS: 0.125, Probes: 7, Failures: 2, RaftFailures: 1, Since: at.Add(time.Second), Version: "v1",
		StateCheck: &cluster.StateCheck{Index: 9, Hash: "00000000000000ab"}}
	decodeStrict(t, cluster.Health{Node: "n1", LeaderID: "n3", Leader: "r", Peers: []cluster.PeerStatus{peer},
		Integrity: cluster.Integrity{State: cluster.StateDiverged, Check: &cluster.StateCheck{Index: 9, Hash: "00000000000000cd"}, Index: 9, Reason: "r"}}, &client.Health{})
	decodeStrict(t, cluster.Health{Node: "n1", Peers: []cluster.PeerStatus{}, Alarms: []storage.Alarm{{Type: storage.AlarmNoSpace, Member: "n2", Reason: "r", Index: 7}},
		Space: &cluster.Space{StateFileBytes: 1, StateUsedBytes: 2, QuotaBytes: 3, DataDirFreeBytes: 4, MinFreeBytes: 5, Error: "e", MeasuredAt: at}}, &client.Health{})
	decodeStrict(t, []storage.Alarm{{Type: storage.AlarmNoSpace, Member: "n2", Reason: "r", Index: 7}}, &[]client.Alarm{})
	if client.AlarmNoSpace != storage.AlarmNoSpace {
		t.Fatal("alarm type differs from package storage")
	}
	decodeStrict(t, cluster.Health{Node: "n1"}, &client.Health{})
	for _, s := range [][2]string{
		{string(cluster.PeerUnknown), string(client.PeerUnknown)}, {string(cluster.PeerAlive), string(client.PeerAlive)},
		{string(cluster.PeerSuspect), string(client.PeerSuspect)}, {string(cluster.PeerDead), string(client.PeerDead)},
	} {
		if s[0] != s[1] {
			t.Fatalf("server constant %q, client %q", s[0], s[1])
		}
	}
	if !slices.Equal(client.CrashActors, actors.CrashableActors) {
		t.Fatalf("client.CrashActors = %q, server accepts %q", client.CrashActors, actors.CrashableActors)
	}
}
