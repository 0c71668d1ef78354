package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// The compose test needs Docker, docker-compose and the image `make
// docker` builds; `make compose-test` provides all three and sets
// TROUPE_COMPOSE_TEST=1. Without that variable (plain `go test ./...`) it
// skips; with it, a missing Docker is a failure, never a skip.
const composeGate = "TROUPE_COMPOSE_TEST"

// Bounds on each wait, so a broken cluster fails the test in minutes
// rather than hanging CI; all of them together stay well inside the
// -timeout compose-test gives go test, so the cleanup always runs.
const (
	waitCluster  = 60 * time.Second // containers up, a leader, healthy
	waitProgress = 30 * time.Second // acknowledged writes after a fault
	waitConverge = 60 * time.Second // every node holds every write
	cmdTimeout   = 90 * time.Second // one docker or docker-compose command
)

// TestCompose runs 3 nodes with docker-compose and, under a writer that
// records every acknowledged write, kills the leader's container and
// starts it again, then cuts a node off the network and reconnects it.
// After each fault every node must converge to the same state holding
// every acknowledged write, read both from its own state (?stale) and
// linearizably.
func TestCompose(t *testing.T) {
	if os.Getenv(composeGate) != "1" {
		t.Skipf("needs Docker and the image: run make compose-test (sets %s=1)", composeGate)
	}
	image := os.Getenv("TROUPE_IMAGE")
	if image == "" {
		t.Fatal("TROUPE_IMAGE names no image (make compose-test builds one and sets it)")
	}
	requireDocker(t, image)
	start := time.Now()
	c := up(t, "docker-compose.yml", image, 3)
	leader := c.waitLeader()
	c.waitHealthy()
	c.checkVersions(imageVersion(t, image))
	t.Logf("%s: 3 nodes up, %s leads, all healthy", since(start), leader)

	// Writes go through a follower, which the kill spares.
	entry := c.other(leader, "")
	w := c.startWriter(entry, "kill")
	w.WaitAcks(50, waitProgress)
	cid := c.container(leader)
	c.run("docker", "kill", cid)
	t.Logf("%s: killed %s (the leader) under writes through %s", since(start), leader, entry)
	w.WaitAcks(w.Acks()+50, waitProgress)
	c.run("docker", "start", cid)
	w.WaitAcks(w.Acks()+50, waitProgress)
	acked := w.Stop()
	t.Logf("%s: %s restarted; writer: %s", since(start), leader, w)
	c.converge(acked)
	t.Logf("%s: converged after the kill", since(start))

	// This time the leader is cut off, and writes go through another node.
	victim := c.waitLeader()
	entry = c.other(victim, "")
	w = c.startWriter(entry, "partition")
	w.WaitAcks(50, waitProgress)
	network := c.project + "_troupe"
	c.run("docker", "network", "disconnect", network, c.container(victim))
	t.Logf("%s: cut %s (the leader) off the network under writes through %s", since(start), victim, entry)
	w.WaitAcks(w.Acks()+50, waitProgress)
	// Reconnected, the node must answer to its service name again.
	c.run("docker", "network", "connect", "--alias", victim, network, c.container(victim))
	w.WaitAcks(w.Acks()+50, waitProgress)
	more := w.Stop()
	t.Logf("%s: %s reconnected; writer: %s", since(start), victim, w)
	for k, v := range more {
		acked[k] = v
	}
	c.converge(acked)
	t.Logf("%s: converged after the partition: %d acknowledged writes on every node", since(start), len(acked))
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// requireDocker fails the test, loudly, when Docker, docker-compose or
// the image is missing.
func requireDocker(t *testing.T, image string) {
	t.Helper()
	for _, cmd := range [][]string{
		{"docker", "version", "--format", "{{.Server.Version}}"},
		{"docker-compose", "version", "--short"},
		{"docker", "image", "inspect", "--format", "{{.Id}}", image},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("the compose test needs Docker, docker-compose and the image %s; %q failed: %v\n%s", image, cmd, err, out)
		}
	}
}

// imageVersion is the version the image's kvnode was stamped with, as its
// --version says ("kvnode <version> (commit ...").
func imageVersion(t *testing.T, image string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none", image, "--version").CombinedOutput()
	f := strings.Fields(string(out))
	if err != nil || len(f) < 3 || f[0] != "kvnode" || !strings.HasPrefix(f[2], "(commit") {
		t.Fatalf("docker run %s --version: %q, %v", image, out, err)
	}
	return f[1]
}

// composeCluster is one docker-compose project the test created.
type composeCluster struct {
	t       *testing.T
	project string
	file    string
	env     []string
	ids     []string
	http    *http.Client
}

// up starts the file's nodes under a project name of this run's own, with
// every host port picked by Docker, and tears the project down (volumes
// included) when the test ends, whatever its outcome.
func up(t *testing.T, file, image string, nodes int) *composeCluster {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	c := &composeCluster{
		t:       t,
		project: "troupe-ct-" + hex.EncodeToString(suffix),
		file:    file,
		env:     append(os.Environ(), "TROUPE_IMAGE="+image),
		http:    &http.Client{Timeout: 3 * time.Second},
	}
	for i := 1; i <= nodes; i++ {
		c.ids = append(c.ids, fmt.Sprintf("n%d", i))
		c.env = append(c.env, fmt.Sprintf("TROUPE_N%d_PORT=0", i))
	}
	t.Cleanup(func() {
		if _, err := c.exec("docker-compose", "-p", c.project, "-f", c.file, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("tearing down %s: %v (remove what is left: docker ps -a --filter label=com.docker.compose.project=%s)", c.project, err, c.project)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.exec("docker-compose", "-p", c.project, "-f", c.file, "logs", "--no-color", "--tail", "60")
			t.Logf("logs of %s:\n%s", c.project, out)
		}
	})
	c.compose("up", "-d")
	return c
}

// exec runs one command, bounded by cmdTimeout.
func (c *composeCluster) exec(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String()), err
}

func (c *composeCluster) run(name string, args ...string) string {
	c.t.Helper()
	out, err := c.exec(name, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *composeCluster) compose(args ...string) string {
	c.t.Helper()
	return c.run("docker-compose", append([]string{"-p", c.project, "-f", c.file}, args...)...)
}

// container is the id of a node's container.
func (c *composeCluster) container(id string) string {
	c.t.Helper()
	cid := c.compose("ps", "-q", id)
	if cid == "" {
		c.t.Fatalf("no container for %s", id)
	}
	return cid
}

// endpoint is where the host reaches a node's HTTP port now: Docker picks
// a new host port when a container starts again or rejoins the network.
func (c *composeCluster) endpoint(id string) (string, error) {
	out, err := c.exec("docker-compose", "-p", c.project, "-f", c.file, "port", id, "8500")
	if err != nil || out == "" || strings.HasSuffix(out, ":0") {
		return "", fmt.Errorf("%s publishes no HTTP port (%q, %v)", id, out, err)
	}
	return out, nil
}

// getJSON GETs path from a node and decodes the answer.
func (c *composeCluster) getJSON(id, path string, v any) error {
	return deploytest.HTTPGetJSON(c.http, func(id string) (string, error) {
		addr, err := c.endpoint(id)
		return "http://" + addr, err
	})(id, path, v)
}

// status is the part of /v1/cluster/status the test reads.
type status struct {
	ID           string `json:"id"`
	LeaderID     string `json:"leader_id"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
}

func (c *composeCluster) eventually(what string, within time.Duration, check func() error) {
	c.t.Helper()
	deploytest.Eventually(c.t, what, within, check)
}

// waitLeader waits until every node answers and names the same leader;
// it returns the leader's id.
func (c *composeCluster) waitLeader() string {
	c.t.Helper()
	var leader string
	c.eventually("every node agrees on a leader", waitCluster, func() error {
		leader = ""
		for _, id := range c.ids {
			var st status
			if err := c.getJSON(id, "/v1/cluster/status", &st); err != nil {
				return err
			}
			switch {
			case st.LeaderID == "":
				return fmt.Errorf("%s knows no leader (leader_id %q)", id, st.LeaderID)
			case leader != "" && st.LeaderID != leader:
				return fmt.Errorf("nodes disagree on the leader: %s and %s", leader, st.LeaderID)
			}
			leader = st.LeaderID
		}
		return nil
	})
	return leader
}

// waitHealthy waits for Docker to call every container healthy: the
// image's HEALTHCHECK (kvnode healthcheck, /readyz) passes.
func (c *composeCluster) waitHealthy() {
	c.t.Helper()
	c.eventually("every container healthy", waitCluster, func() error {
		for _, id := range c.ids {
			health, err := c.exec("docker", "inspect", "--format", "{{.State.Health.Status}}", c.container(id))
			if err != nil {
				return err
			}
			if health != "healthy" {
				return fmt.Errorf("%s is %s", id, health)
			}
		}
		return nil
	})
}

// checkVersions waits until every node names every member's version as
// the image's, as each learns them from its peers.
func (c *composeCluster) checkVersions(want string) {
	c.t.Helper()
	c.eventually("every node knows every member's version", waitCluster, func() error {
		for _, id := range c.ids {
			var members []struct {
				ID      string `json:"id"`
				Version string `json:"version"`
			}
			if err := c.getJSON(id, "/v1/cluster/members", &members); err != nil {
				return err
			}
			if len(members) != len(c.ids) {
				return fmt.Errorf("%s lists %d members", id, len(members))
			}
			for _, m := range members {
				if m.Version != want {
					return fmt.Errorf("%s says %s runs %q, want %q", id, m.ID, m.Version, want)
				}
			}
		}
		return nil
	})
}

// other is a node that is neither a nor b.
func (c *composeCluster) other(a, b string) string {
	for _, id := range c.ids {
		if id != a && id != b {
			return id
		}
	}
	c.t.Fatalf("no node other than %s and %s", a, b)
	return ""
}

// converge waits until every node has applied the same index and holds
// every acknowledged write, read from its own state and linearizably.
func (c *composeCluster) converge(acked map[string]string) {
	c.t.Helper()
	deploytest.Converge(c.t, c.ids, c.getJSON, "ct", acked, waitConverge)
}

// startWriter PUTs fresh keys through one node, one right after the
// other, and records those the node acknowledged.
func (c *composeCluster) startWriter(id, phase string) *deploytest.Writer {
	c.t.Helper()
	addr, err := c.endpoint(id)
	if err != nil {
		c.t.Fatal(err)
	}
	return deploytest.StartWriter(c.t, "ct/"+phase, []string{"http://" + addr}, 0)
}
