package integration

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

// shutdownCase is one situation a node is SIGTERMed in.
type shutdownCase struct {
	name string
	// victim picks the node to stop, given the leader; fault then breaks
	// what it should (a peer killed, the victim cut off) and returns the
	// node a client write should hang on (nil: none).
	victim func(c *testcluster.Cluster, leader *testcluster.Node) *testcluster.Node
	fault  func(t *testing.T, c *testcluster.Cluster, leader, victim *testcluster.Node)
	// pending sends a write to the victim that cannot commit, so the
	// stop has a request in flight to drain.
	pending bool
}

func theLeader(c *testcluster.Cluster, leader *testcluster.Node) *testcluster.Node {
	return leader
}

func aFollower(c *testcluster.Cluster, leader *testcluster.Node) *testcluster.Node {
	return c.Followers(leader)[0]
}

// killOther kills a running node that is neither the victim nor, when
// it can be avoided, the leader.
func killOther(t *testing.T, c *testcluster.Cluster, leader, victim *testcluster.Node) {
	for _, n := range c.Followers(leader) {
		if n != victim {
			n.Kill()
			return
		}
	}
}

func killPeers(t *testing.T, c *testcluster.Cluster, leader, victim *testcluster.Node) {
	for _, n := range c.Nodes {
		if n != victim {
			n.Kill()
		}
	}
}

func isolateVictim(t *testing.T, c *testcluster.Cluster, leader, victim *testcluster.Node) {
	installPlan(t, c, faultplan.Must(faultplan.Isolate(nodeIDs(c), victim.ID)))
}

var shutdownCases = []shutdownCase{
	{name: "leader", victim: theLeader},
	{name: "follower", victim: aFollower},
	{name: "leader, a follower killed", victim: theLeader, fault: killOther},
	{name: "follower, both peers killed, a write waiting", victim: aFollower, fault: killPeers, pending: true},
	{name: "leader partitioned at the signal", victim: theLeader, fault: isolateVictim},
	{name: "leader partitioned, a write waiting", victim: theLeader, fault: isolateVictim, pending: true},
	{name: "follower partitioned, a write waiting", victim: aFollower, fault: isolateVictim, pending: true},
}

// dockerStopTimeout is how long `docker stop` waits after SIGTERM before
// it sends SIGKILL, by default.
const dockerStopTimeout = 10 * time.Second

// TestShutdownTimes SIGTERMs a node in each of shutdownCases and checks
// that it exits with status 0, with request_timeout at a minute: a write
// left waiting for a quorum must not hold the stop for its own timeout.
// Status 0 is the bound: kvnode gives up and exits 1 when its whole stop
// takes more than 5 s (shutdownTimeout), or when Raft's close outlasts its
// step, so a step that waits on a fault fails the test without the test
// timing anything. It also waits no longer than Docker would before
// SIGKILL, and logs how long each stop took (docs/operations.md reports
// them).
func TestShutdownTimes(t *testing.T) {
	for _, sc := range shutdownCases {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			c := testcluster.Start(t, 3, testcluster.Options{Chaos: true, Args: []string{"--request-timeout", "60s"}})
			leader := c.WaitLeader(20 * time.Second)
			if code, body := put(t, leader, "before", "1"); code != 200 {
				t.Fatalf("setup write: %d %s", code, body)
			}
			victim := sc.victim(c, leader)
			waitCaughtUp(t, leader, victim)
			if sc.fault != nil {
				sc.fault(t, c, leader, victim)
			}
			if sc.pending {
				// Give the fault time to be felt, then leave a write
				// waiting on the victim.
				time.Sleep(time.Second)
				go func() { _, _, _, _ = victim.Do(http.MethodPut, "/v1/kv/pending", []byte("x")) }()
				time.Sleep(300 * time.Millisecond)
			}
			start := time.Now()
			if err := victim.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			exit := victim.WaitExit(dockerStopTimeout)
			took := time.Since(start)
			t.Logf("%s: SIGTERM to exit %v (status %v)", sc.name, took.Round(time.Millisecond), exit)
			for _, line := range strings.Split(victim.LastRun(), "\n") {
				if strings.Contains(line, "leadership") || strings.Contains(line, "stopped") {
					t.Log(line)
				}
			}
			if exit != nil {
				t.Fatalf("%s exited with %v, want status 0\n%s", victim.ID, exit, victim.Tail(3000))
			}
		})
	}
}

// handOverLine is what a leader logs once it has handed leadership over
// on its way out.
var handOverLine = regexp.MustCompile(`msg="leadership handed over before shutdown".* to=(\S+) term=(\d+)`)

// TestSIGTERMedLeaderHandsOver: a leader stopped with SIGTERM hands
// leadership to a live voter before it goes, and exits with status 0. The
// proof is not timing: the old leader logs whom it handed over to in its
// term, and the survivors then agree that this very node leads, in the
// next term (an election after a timeout could have been won by either,
// and a failed transfer logs something else). With a follower killed
// first, the handover must go to the live one.
func TestSIGTERMedLeaderHandsOver(t *testing.T) {
	for _, killOne := range []bool{false, true} {
		name := "all_up"
		if killOne {
			name = "a_follower_dead"
		}
		t.Run(name, func(t *testing.T) {
			// Five nodes when one is killed: the other four keep a
			// quorum after the leader has gone too.
			size := 3
			if killOne {
				size = 5
			}
			c := testcluster.Start(t, size, testcluster.Options{})
			leader := c.WaitLeader(20 * time.Second)
			if code, body := put(t, leader, "before", "1"); code != 200 {
				t.Fatalf("setup write: %d %s", code, body)
			}
			var dead *testcluster.Node
			if killOne {
				dead = c.Followers(leader)[0]
				dead.Kill()
			}
			before, err := leader.Status()
			if err != nil {
				t.Fatal(err)
			}
			if err := leader.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if exit := leader.WaitExit(30 * time.Second); exit != nil {
				t.Fatalf("the old leader exited with %v, want status 0\n%s", exit, leader.Tail(3000))
			}
			m := handOverLine.FindStringSubmatch(leader.LastRun())
			if m == nil {
				t.Fatalf("the old leader logged no handover:\n%s", leader.Tail(3000))
			}
			to, term := m[1], m[2]
			if term != strconv.FormatUint(before.Term, 10) {
				t.Fatalf("handed over in term %s, but led term %d", term, before.Term)
			}
			if dead != nil && to == dead.ID {
				t.Fatalf("handed over to %s, which was killed", to)
			}
			now := c.WaitLeader(20 * time.Second)
			st, err := now.Status()
			if err != nil {
				t.Fatal(err)
			}
			if now.ID != to || st.Term != before.Term+1 {
				t.Fatalf("after the handover %s leads term %d; want %s in term %d", now.ID, st.Term, to, before.Term+1)
			}
			if code, body := put(t, now, "after", "1"); code != 200 {
				t.Fatalf("write after the handover: %d %s", code, body)
			}
		})
	}
}
