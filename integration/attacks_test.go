package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/storage"
)

// TestNetworkAttacksChangeNothing replays, against real nodes, what an
// attacker on the same network did before node-to-node traffic moved to
// its own port: bogus voters through the client port, forged internal
// requests that redirect forwarding, and the same tried on the peer port
// directly. Every attempt fails; afterwards the members are the same, a
// leader serves, and every acknowledged write is on every node.
func TestNetworkAttacksChangeNothing(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	acked := map[string]string{}
	for i := 0; i < 12; i++ {
		k, v := fmt.Sprintf("acked/%d", i), fmt.Sprintf("v%d", i)
		if code, body := put(t, c.Nodes[i%3], k, v); code != 200 || body != "true" {
			t.Fatalf("PUT %s: %d %q", k, code, body)
		}
		acked[k] = v
	}
	before := waitMembers(t, leader, 3, "before")

	// Bogus voters through the client port: the leader cannot reach them,
	// so it refuses to add them (they would have cost the quorum).
	for i := 0; i < 3; i++ {
		body := fmt.Sprintf(`{"id":"evil%d","raft_addr":%q}`, i, deadAddr(t))
		code, answer, _, err := c.Nodes[i].Do(http.MethodPost, "/v1/cluster/join", []byte(body))
		if err != nil || code != http.StatusConflict || !strings.Contains(string(answer), "cannot reach") {
			t.Fatalf("bogus join through %s: %d %q %v", c.Nodes[i].ID, code, answer, err)
		}
	}

	// The old internal endpoints, with the header that used to mark a
	// peer: gone from the client port.
	redirect := (&storage.Command{Op: storage.OpRegisterNode, Key: leader.ID, Value: []byte("10.6.6.6:8500")}).Encode()
	for _, n := range c.Nodes {
		for _, p := range []string{"/v1/internal/apply", "/v1/internal/apply-batch", "/v1/internal/read-index", "/v1/internal/ping"} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+n.HTTPAddr+p, strings.NewReader(string(redirect)))
			req.Header.Set("X-Troupe-Forwarded-By", c.Followers(leader)[0].ID)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("POST %s on %s: %d, want 404", p, n.ID, resp.StatusCode)
			}
		}
	}

	// The peer port: an HTTP client gets no answer at all.
	conn, err := net.Dial("tcp", leader.RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /apply HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(redirect), redirect)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(conn); len(b) != 0 {
		t.Fatalf("the peer port answered an HTTP client: %q", b)
	}
	conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A caller naming itself as no member is not admitted at all.
	stranger := peerlink.NewClient(peerlink.Config{Network: faultnet.Plain("evil")})
	defer stranger.Close()
	if _, err := stranger.Apply(ctx, leader.RaftAddr, redirect); err == nil {
		t.Fatal("a stranger's forwarded write was accepted")
	}
	if err := stranger.Membership(ctx, leader.RaftAddr, peerlink.MembershipRequest{Remove: c.Followers(leader)[0].ID}); err == nil {
		t.Fatal("a stranger's membership change was accepted")
	}
	// A member may register its own address only. (Without TLS a caller's
	// id is its word: docs/security.md says what that leaves open.)
	member := peerlink.NewClient(peerlink.Config{Network: faultnet.Plain(c.Followers(leader)[0].ID)})
	defer member.Close()
	var re *peerlink.RemoteError
	if _, err := member.Apply(ctx, leader.RaftAddr, redirect); !errors.As(err, &re) || re.Status != http.StatusForbidden {
		t.Fatalf("a member registering the leader's address: %v, want 403", err)
	}
	deregister := (&storage.Command{Op: storage.OpDeregisterNode, Key: leader.ID}).Encode()
	if _, err := member.Apply(ctx, leader.RaftAddr, deregister); !errors.As(err, &re) || re.Status != http.StatusForbidden {
		t.Fatalf("a member deregistering the leader: %v, want 403", err)
	}

	// Nothing changed.
	after := waitMembers(t, c.WaitLeader(20*time.Second), 3, "after")
	for id, m := range before {
		if after[id] != m && (after[id].RaftAddr != m.RaftAddr || after[id].HTTPAddr != m.HTTPAddr) {
			t.Fatalf("member %s changed: %+v -> %+v", id, m, after[id])
		}
	}
	if code, body := put(t, c.Followers(leader)[0], "after", "1"); code != 200 || body != "true" {
		t.Fatalf("write through a follower after the attacks: %d %q", code, body)
	}
	for _, n := range c.Nodes {
		for k, v := range acked {
			if code, p := get(t, n, k, ""); code != 200 || string(p.Value) != v {
				t.Fatalf("%s on %s after the attacks: %d %+v", k, n.ID, code, p)
			}
		}
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
