package chaos

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/localcluster"
)

func TestFillTemplate(t *testing.T) {
	n := Node{ID: "n2", HTTPAddr: "10.0.0.2:8500", RaftAddr: "10.0.0.2:8300"}
	got := n.Fill("ssh {host} kill {id} # {http} {raft} {other}")
	if want := "ssh 10.0.0.2 kill n2 # 10.0.0.2:8500 10.0.0.2:8300 {other}"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := (Node{ID: "n1", HTTPAddr: "[::1]:8500"}).Fill("{host}|{raft}"); got != "::1|" {
		t.Fatalf("IPv6 host, unknown raft: %q", got)
	}
}

func TestExternalNodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster/members" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`[{"id":"n1","raft_addr":"h1:8300","http_addr":"h1:8500"},{"id":"n2","raft_addr":"h2:8300","http_addr":"h2:8500"}]`))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	// Plain addresses: the member list names everyone, with both addresses.
	nodes, err := ExternalNodes(ctx, "127.0.0.1:1,"+addr)
	if err != nil || len(nodes) != 2 || nodes[1] != (Node{ID: "n2", HTTPAddr: "h2:8500", RaftAddr: "h2:8300"}) {
		t.Fatalf("plain: %+v, %v", nodes, err)
	}
	// Named members stay as given; the list only adds Raft addresses.
	nodes, err = ExternalNodes(ctx, "n2="+addr)
	if err != nil || len(nodes) != 1 || nodes[0] != (Node{ID: "n2", HTTPAddr: addr, RaftAddr: "h2:8300"}) {
		t.Fatalf("named: %+v, %v", nodes, err)
	}
	// Named members need no answer at all; plain ones do.
	if nodes, err := ExternalNodes(ctx, "n1=127.0.0.1:1"); err != nil || nodes[0].RaftAddr != "" {
		t.Fatalf("named, silent: %+v, %v", nodes, err)
	}
	if _, err := ExternalNodes(ctx, "127.0.0.1:1"); err == nil {
		t.Fatal("plain addresses that do not answer were accepted")
	}
}

// Inject against a cluster it did not start, as kill-leader.sh and
// pause-leader.sh use it on 'make run': members found from one address,
// processes found by their listening address and signalled, the killed
// leader started again from /proc.
func TestInjectIntoRunningCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, 3, testcluster.Options{})
	c.WaitLeader(30 * time.Second)
	t.Cleanup(func() {
		// The restarted node is no child of the cluster's: end it by address.
		for _, n := range c.Nodes {
			if p, err := localcluster.FindProcess(n.ID, n.HTTPAddr); err == nil {
				_ = p.Kill(context.Background())
			}
		}
	})
	ctx := context.Background()
	nodes, err := ExternalNodes(ctx, c.Nodes[0].HTTPAddr)
	if err != nil || len(nodes) != 3 {
		t.Fatalf("members: %+v, %v", nodes, err)
	}
	target := NewExternal(ExternalConfig{Nodes: nodes, Logf: t.Logf})
	if !target.CanKill() || !target.CanPause() {
		t.Fatal("local members cannot be killed or paused without commands")
	}
	for _, nemesis := range []string{"kill-leader", "pause-leader"} {
		res, err := Inject(ctx, InjectConfig{Nemesis: nemesis, Hold: 3 * time.Second, Logf: t.Logf}, target)
		if err != nil {
			t.Fatalf("%s: %v", nemesis, err)
		}
		if res.OldLeader == "" || res.NewLeader == "" || res.NewLeader == res.OldLeader || res.Leader == "" {
			t.Fatalf("%s: %+v", nemesis, res)
		}
	}
}
