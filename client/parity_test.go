package client_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/troupe-kv/troupe/api"
	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster"
)

// The client keeps its own copies of the server's JSON types so tools do
// not link Raft. These tests catch the copies drifting: every field the
// server sends must land in a client field of the same value.
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
	decodeStrict(t, cluster.Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h", Voter: true, Leader: true}, &client.Member{})
	decodeStrict(t, cluster.Status{ID: "n1", State: "Leader", Term: 1, CommitIndex: 2, AppliedIndex: 3, LastLogIndex: 4,
		LastSnapshotIndex: 5, LastContactMS: 6, LeaderID: "n1", LeaderRaftAddr: "r", LeaderHTTPAddr: "h"}, &client.Status{})
	decodeStrict(t, cluster.JoinRequest{ID: "n4", RaftAddr: "r", HTTPAddr: "h"}, &client.JoinRequest{})
	if client.OutcomeHeader != api.OutcomeHeader || client.OutcomeNotApplied != api.OutcomeNotApplied || client.OutcomeUnknown != api.OutcomeUnknown {
		t.Fatal("outcome header or values differ from package api")
	}
}
