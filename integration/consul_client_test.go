package integration

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// consulClient returns the official Consul Go client pointed at node,
// with CONSUL_* variables from the environment ignored (they would add
// tokens or namespaces to every request).
func consulClient(t *testing.T, node *testcluster.Node) *consul.Client {
	t.Helper()
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONSUL_") {
			k, _, _ := strings.Cut(kv, "=")
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	cfg := consul.DefaultConfig()
	cfg.Address = node.HTTPAddr
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOfficialConsulClient drives Troupe with hashicorp/consul/api v1.34.5:
// Put, Get, List, Keys, CAS, Delete, DeleteCAS, DeleteTree, status and a
// blocking query, through a follower and the leader.
func TestOfficialConsulClient(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	kv := consulClient(t, follower).KV()
	kvLeader := consulClient(t, leader).KV()

	// Put and Get, with 64-bit flags (the Semaphore helper's value).
	const semFlags = uint64(16210313421097356768)
	if _, err := kv.Put(&consul.KVPair{Key: "app/config", Value: []byte("v1"), Flags: semFlags}, nil); err != nil {
		t.Fatalf("Put: %v", err)
	}
	p, meta, err := kv.Get("app/config", nil)
	if err != nil || p == nil {
		t.Fatalf("Get: %v %v", p, err)
	}
	if string(p.Value) != "v1" || p.Flags != semFlags || p.CreateIndex == 0 || p.ModifyIndex != p.CreateIndex {
		t.Fatalf("Get returned %+v", p)
	}
	if meta.LastIndex != p.ModifyIndex || !meta.KnownLeader {
		t.Fatalf("Get meta %+v, want LastIndex == ModifyIndex %d and a known leader", meta, p.ModifyIndex)
	}
	if p, _, err := kv.Get("missing", nil); err != nil || p != nil {
		t.Fatalf("Get missing: %v %v", p, err)
	}
	if _, err := kv.Put(&consul.KVPair{Key: "/leading"}, nil); err == nil {
		t.Fatal("Put with a leading slash should fail in the client")
	}

	// CAS: 0 creates only; a stale index fails; the index from Get wins.
	ok, _, err := kv.CAS(&consul.KVPair{Key: "app/config", Value: []byte("nope"), ModifyIndex: 0}, nil)
	if err != nil || ok {
		t.Fatalf("CAS 0 on an existing key: %v %v", ok, err)
	}
	ok, _, err = kv.CAS(&consul.KVPair{Key: "app/new", Value: []byte("created"), ModifyIndex: 0}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS 0 creating: %v %v", ok, err)
	}
	ok, _, err = kv.CAS(&consul.KVPair{Key: "app/config", Value: []byte("v2"), ModifyIndex: meta.LastIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS with meta.LastIndex: %v %v", ok, err)
	}
	ok, _, err = kv.CAS(&consul.KVPair{Key: "app/config", Value: []byte("v3"), ModifyIndex: meta.LastIndex}, nil)
	if err != nil || ok {
		t.Fatalf("CAS with a stale index: %v %v", ok, err)
	}
	if p, _, _ := kvLeader.Get("app/config", nil); p == nil || string(p.Value) != "v2" || p.CreateIndex >= p.ModifyIndex {
		t.Fatalf("after CAS: %+v", p)
	}

	// List and Keys.
	for _, k := range []string{"app/sub/a", "app/sub/b", "app/z"} {
		if _, err := kv.Put(&consul.KVPair{Key: k, Value: []byte(k)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pairs, _, err := kv.List("app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, p := range pairs {
		listed = append(listed, p.Key)
	}
	if want := []string{"app/config", "app/new", "app/sub/a", "app/sub/b", "app/z"}; !reflect.DeepEqual(listed, want) {
		t.Fatalf("List: %v, want %v", listed, want)
	}
	keys, _, err := kv.Keys("app/", "/", nil)
	if want := []string{"app/config", "app/new", "app/sub/", "app/z"}; err != nil || !reflect.DeepEqual(keys, want) {
		t.Fatalf("Keys with separator: %v %v, want %v", keys, err, want)
	}
	if keys, _, err := kv.Keys("nothing/", "", nil); err != nil || keys != nil {
		t.Fatalf("Keys of an empty prefix: %v %v", keys, err)
	}

	// DeleteCAS: stale fails, current succeeds, missing key is true.
	p, _, _ = kv.Get("app/new", nil)
	ok, _, err = kv.DeleteCAS(&consul.KVPair{Key: "app/new", ModifyIndex: p.ModifyIndex + 1000}, nil)
	if err != nil || ok {
		t.Fatalf("DeleteCAS stale: %v %v", ok, err)
	}
	ok, _, err = kv.DeleteCAS(&consul.KVPair{Key: "app/new", ModifyIndex: p.ModifyIndex}, nil)
	if err != nil || !ok {
		t.Fatalf("DeleteCAS: %v %v", ok, err)
	}
	ok, _, err = kv.DeleteCAS(&consul.KVPair{Key: "app/new", ModifyIndex: 1}, nil)
	if err != nil || !ok {
		t.Fatalf("DeleteCAS on a missing key: %v %v", ok, err)
	}

	// Delete and DeleteTree.
	if _, err := kv.Delete("app/z", nil); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := kv.Get("app/z", nil); p != nil {
		t.Fatalf("Get after Delete: %+v", p)
	}
	if _, err := kv.DeleteTree("app/", nil); err != nil {
		t.Fatal(err)
	}
	if pairs, _, err := kvLeader.List("app/", nil); err != nil || pairs != nil {
		t.Fatalf("List after DeleteTree: %v %v", pairs, err)
	}

	// Status endpoints and the datacenter check.
	status := consulClient(t, follower).Status()
	if l, err := status.Leader(); err != nil || l != leader.RaftAddr {
		t.Fatalf("Status.Leader: %q %v, want %q", l, err, leader.RaftAddr)
	}
	if peers, err := status.Peers(); err != nil || len(peers) != 3 {
		t.Fatalf("Status.Peers: %v %v", peers, err)
	}
	if _, err := status.LeaderWithQueryOptions(&consul.QueryOptions{Datacenter: "elsewhere"}); err == nil || !strings.Contains(err.Error(), "No path to datacenter") {
		t.Fatalf("wrong datacenter: %v", err)
	}

	// A blocking Get wakes when the key changes, with a larger index.
	_, meta, _ = kv.Get("watched", nil)
	woke := make(chan *consul.KVPair, 1)
	go func() {
		p, _, err := kv.Get("watched", &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		woke <- p
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := kvLeader.Put(&consul.KVPair{Key: "unrelated", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kvLeader.Put(&consul.KVPair{Key: "watched", Value: []byte("now")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-woke:
		if p == nil || string(p.Value) != "now" {
			t.Fatalf("blocking Get woke with %+v", p)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("blocking Get did not wake on the write")
	}
}
