package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

var healthCommand = &command{
	name: "health", group: clusterGroup, maxArgs: 0,
	summary: "show which peers a node sees alive (--all: every node's view)",
	long: `Show what the failure detector of the first node that answers thinks of each
peer: its state (unknown, alive, suspect or dead), the suspicion level phi,
how long ago it last answered, the round-trip time of its pings (mean ±
standard deviation), how many pings were sent and how many went unanswered.
The first line is the node's own view of the leader.

--all asks every node given with --addr on its own and prints each view, so
that asymmetric failures (A hears B, B does not hear A) show. Nodes that do
not answer are listed as unreachable, their errors go to stderr, and kvctl
exits with status 2.

kvctl health exits 0 whenever it could fetch the views, whatever they say.
--check is for scripts: it exits with status 1 if any peer, in any view
asked, is not alive (unknown, suspect or dead), or if a view leaves out a
member (a failure detector that has just restarted). "Last heard" is
measured against this machine's clock.

With -o json, print the node's answer as it sent it; with --all, a list of
{"endpoint", "health", "error"}, one per --addr node.`,
	example: `  kvctl health
  kvctl --addr 10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500 health --all
  kvctl health --all --check && echo "every node sees every peer alive"
  kvctl -o json health | jq -r '.peers[] | select(.state != "alive") | .id'`,
	setup: func(fs *pflag.FlagSet) action {
		all := fs.BoolP("all", "a", false, "ask every --addr node and print each one's view")
		check := fs.Bool("check", false, "exit with status 1 if any peer is not alive")
		return func(inv *invocation, args []string) error {
			var views []healthView
			if *all {
				views = inv.healthAll()
			} else {
				h, err := inv.client.Health(inv.ctx)
				if err != nil {
					return err
				}
				views = []healthView{{Health: h}}
			}
			var err error
			switch {
			case inv.json && *all:
				err = inv.printJSON(views)
			case inv.json:
				err = inv.printJSON(views[0].Health)
			default:
				err = printHealth(inv.stdout, views, time.Now())
			}
			if err != nil {
				return err
			}
			var failed []string
			for _, v := range views {
				if v.Error != "" {
					failed = append(failed, v.Error)
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d nodes did not answer: %s", len(failed), len(views), strings.Join(failed, "; "))
			}
			if *check {
				// A node whose failure detector has just restarted lists
				// no peers at all until it reads the member list again:
				// a missing verdict is no clean bill of health.
				ms, err := inv.client.Members(inv.ctx)
				if err != nil {
					return fmt.Errorf("reading the member list for --check: %w", err)
				}
				if bad := unhealthy(views, ms); len(bad) > 0 {
					return no("not every peer is alive: %s", strings.Join(bad, ", "))
				}
			}
			return nil
		}
	},
}

// healthView is one node's answer in health --all (and, with only Health
// set, the answer without --all).
type healthView struct {
	Endpoint string         `json:"endpoint"`
	Health   *client.Health `json:"health,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// healthAll asks every node on its own, without failover: the point is to
// compare the views.
func (inv *invocation) healthAll() []healthView {
	views := make([]healthView, len(inv.addrs))
	var wg sync.WaitGroup
	for i, a := range inv.addrs {
		wg.Go(func() {
			one := inv.newClient([]string{a}, client.WithMaxAttempts(1))
			defer one.CloseIdleConnections()
			h, err := one.Health(inv.ctx)
			views[i] = healthView{Endpoint: a, Health: h}
			if err != nil {
				views[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return views
}

// unhealthy lists "n1 sees n3 dead" for every peer not alive, and "n1 has
// no verdict on n3" for every member a view leaves out.
func unhealthy(views []healthView, members []client.Member) []string {
	var out []string
	for _, v := range views {
		if v.Health == nil {
			continue
		}
		seen := map[string]bool{}
		for _, p := range v.Health.Peers {
			seen[p.ID] = true
			if p.State != client.PeerAlive {
				out = append(out, fmt.Sprintf("%s sees %s %s", v.Health.Node, p.ID, orDash(string(p.State))))
			}
		}
		for _, m := range members {
			if m.ID != v.Health.Node && !seen[m.ID] {
				out = append(out, fmt.Sprintf("%s has no verdict on %s", v.Health.Node, m.ID))
			}
		}
	}
	return out
}

func printHealth(w io.Writer, views []healthView, now time.Time) error {
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(w)
		}
		h := v.Health
		if h == nil {
			fmt.Fprintf(w, "%s: unreachable\n", v.Endpoint)
			continue
		}
		who := h.Node
		if v.Endpoint != "" {
			who = fmt.Sprintf("%s at %s", h.Node, v.Endpoint)
		}
		switch {
		case h.LeaderID == "":
			fmt.Fprintf(w, "%s: no leader known\n", who)
		case h.LeaderID == h.Node:
			fmt.Fprintf(w, "%s: leader %s (this node, raft %s)\n", who, h.LeaderID, orDash(h.LeaderRaftAddr))
		default:
			fmt.Fprintf(w, "%s: leader %s (raft %s)\n", who, h.LeaderID, orDash(h.LeaderRaftAddr))
		}
		for _, a := range h.Alarms {
			fmt.Fprintf(w, "alarm %s raised by %s at index %d: %s (kvctl alarm list)\n", a.Type, a.Member, a.Index, a.Reason)
		}
		if len(h.Peers) == 0 {
			fmt.Fprintln(w, "no peers")
			continue
		}
		tw := newTable(w)
		fmt.Fprintln(tw, "ID\tSTATE\tPHI\tLAST HEARD\tRTT\tPROBES\tFAILURES")
		for _, p := range h.Peers {
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t%s\t%d\t%d\n", p.ID, orDash(string(p.State)), p.Phi,
				lastHeard(p, now), rtt(p), p.Probes, p.Failures)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// lastHeard renders "120ms ago". A monitor that has not had an answer since
// it started reports its start as last_heard; that is shown as "never".
func lastHeard(p client.PeerHealth, now time.Time) string {
	if p.LastHeard.IsZero() || p.State == client.PeerUnknown && p.Probes == p.Failures {
		return "never"
	}
	return ago(now.Sub(p.LastHeard)) + " ago"
}

// ago rounds a duration to what a person reads: milliseconds below a
// second, hundredths of a second below a minute, seconds beyond. A node's
// clock slightly ahead of ours shows as 0s rather than negative.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// rtt renders the ping round trip as mean±deviation, "-" before the first
// answer.
func rtt(p client.PeerHealth) string {
	if p.Probes == p.Failures && p.RTTMeanMS == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f±%.2fms", p.RTTMeanMS, p.RTTStdDevMS)
}
