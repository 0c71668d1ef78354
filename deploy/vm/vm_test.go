package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// The stand-in VM test needs Docker, the base image deploy/vm/base-image.sh
// builds (Debian with systemd as PID 1) and two release tarballs of this
// tree stamped with different versions; `make vm-test` provides all of
// them and sets TROUPE_VM_TEST=1. Without that variable (plain `go test
// ./...`) it skips; with it, a missing Docker, image or tarball is a
// failure, never a skip.
const vmGate = "TROUPE_VM_TEST"

// Bounds on each wait, so a broken cluster fails in minutes rather than
// hanging; together they stay inside the -timeout make vm-test gives.
const (
	waitBoot     = 60 * time.Second  // systemd in a container finishes booting
	waitCluster  = 90 * time.Second  // every node ready under one leader
	waitProgress = 30 * time.Second  // acknowledged writes after a fault
	waitConverge = 60 * time.Second  // every node holds every write
	cmdTimeout   = 150 * time.Second // one docker command (install.sh --upgrade waits up to 120 s)
)

// setup reads the gate and what make vm-test hands over, failing loudly
// when something is missing.
func setup(t *testing.T) (image, oldTar, newTar string) {
	t.Helper()
	if os.Getenv(vmGate) != "1" {
		t.Skipf("needs Docker, the stand-in VM image and release tarballs: run make vm-test (sets %s=1)", vmGate)
	}
	image = os.Getenv("TROUPE_VM_IMAGE")
	oldTar, newTar = os.Getenv("TROUPE_VM_TARBALL"), os.Getenv("TROUPE_VM_UPGRADE_TARBALL")
	if image == "" || oldTar == "" || newTar == "" {
		t.Fatal("TROUPE_VM_IMAGE, TROUPE_VM_TARBALL and TROUPE_VM_UPGRADE_TARBALL must be set (make vm-test sets them)")
	}
	for _, f := range []string{oldTar, newTar} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("release tarball: %v", err)
		}
	}
	for _, cmd := range [][]string{
		{"docker", "version", "--format", "{{.Server.Version}}"},
		{"docker", "image", "inspect", "--format", "{{.Id}}", image},
	} {
		if out, err := run(cmd...); err != nil {
			t.Fatalf("the VM test needs Docker and the image %s (make vm-test builds it with deploy/vm/base-image.sh); %q failed: %v\n%s", image, cmd, err, out)
		}
	}
	return image, oldTar, newTar
}

// tarVersion is the version a release tarball's name carries:
// troupe-<version>-<os>-<arch>.tar.gz.
func tarVersion(t *testing.T, path string) string {
	t.Helper()
	name := strings.TrimSuffix(filepath.Base(path), ".tar.gz")
	f := strings.Split(strings.TrimPrefix(name, "troupe-"), "-")
	if !strings.HasPrefix(name, "troupe-") || len(f) < 3 {
		t.Fatalf("%s is not a release tarball's name (troupe-<version>-<os>-<arch>.tar.gz)", path)
	}
	return strings.Join(f[:len(f)-2], "-")
}

// run runs one command, bounded by cmdTimeout; the error carries its output.
func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), err
}

// vm is one stand-in VM: a container with systemd as PID 1.
type vm struct {
	id        string // the node id it runs, n<i>
	host      string // its host name on the private network, vm<i>
	container string
	ip        string
}

// vms is one test's stand-in VMs on a private network of their own.
type vms struct {
	t       *testing.T
	name    string
	network string
	list    []*vm // the VMs that are members of the cluster
	all     []*vm // every VM booted, removed when the test ends
	http    *http.Client
}

// boot starts n stand-in VMs and waits until systemd in each has finished
// booting. They are removed, with their network, when the test ends,
// whatever its outcome; a failed test prints each VM's kvnode journal
// first.
//
// Each is a plain `docker run` of the image's /sbin/init with the host's
// cgroup tree mounted read-only and tmpfs on /run, plus CAP_SYS_ADMIN
// (not --privileged, which fails here), without which systemd cannot give
// a unit its own mount namespace and silently skips ProtectSystem=,
// ReadWritePaths=, PrivateTmp= and the other mount sandboxing: with it,
// the unit's hardening is enforced as on a VM, and the test checks that.
func boot(t *testing.T, image string, n int) *vms {
	t.Helper()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	c := &vms{t: t, name: "troupe-vm-" + hex.EncodeToString(suffix), http: &http.Client{Timeout: 3 * time.Second}}
	c.network = c.name
	c.must("docker", "network", "create", "--label", "troupe-vm-test="+c.name, c.network)
	t.Cleanup(func() {
		var ids []string
		for _, v := range c.all {
			ids = append(ids, v.container)
		}
		if len(ids) > 0 {
			if _, err := run(append([]string{"docker", "rm", "-f", "-v"}, ids...)...); err != nil {
				t.Errorf("removing the VMs: %v (what is left: docker ps -a --filter label=troupe-vm-test=%s)", err, c.name)
			}
		}
		if _, err := run("docker", "network", "rm", c.network); err != nil {
			t.Errorf("removing network %s: %v", c.network, err)
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, v := range c.all {
			out, _ := run("docker", "exec", v.container, "sh", "-c",
				"systemctl status kvnode --no-pager -n 0; journalctl -u kvnode --no-pager -n 60 -o cat")
			t.Logf("== %s (%s) kvnode:\n%s", v.host, v.id, out)
		}
	})
	for i := 1; i <= n; i++ {
		v := &vm{id: fmt.Sprintf("n%d", i), host: fmt.Sprintf("vm%d", i), container: fmt.Sprintf("%s-vm%d", c.name, i)}
		c.must("docker", "run", "-d", "--name", v.container, "--hostname", v.host,
			"--label", "troupe-vm-test="+c.name, "--network", c.network, "--network-alias", v.host,
			"--cap-add", "SYS_ADMIN", "--stop-signal", "SIGRTMIN+3",
			"-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "--tmpfs", "/run", "--tmpfs", "/run/lock",
			image, "/sbin/init")
		c.list, c.all = append(c.list, v), append(c.all, v)
		v.ip = c.must("docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", v.container)
	}
	for _, v := range c.list {
		c.eventually(v.host+" booted", waitBoot, func() error {
			state, _ := c.exec(v, "systemctl", "is-system-running")
			if state != "running" && state != "degraded" {
				return fmt.Errorf("systemctl is-system-running: %q", state)
			}
			return nil
		})
	}
	return c
}

func (c *vms) must(args ...string) string {
	c.t.Helper()
	out, err := run(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// exec runs a command inside a VM.
func (c *vms) exec(v *vm, args ...string) (string, error) {
	return run(append([]string{"docker", "exec", v.container}, args...)...)
}

func (c *vms) mustExec(v *vm, args ...string) string {
	c.t.Helper()
	out, err := c.exec(v, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// unpack copies a release tarball into a VM and unpacks it under /root,
// as an operator would with scp; it returns the release's directory.
func (c *vms) unpack(v *vm, tarball string) string {
	c.t.Helper()
	c.must("docker", "cp", tarball, v.container+":/root/")
	c.mustExec(v, "tar", "-C", "/root", "-xzf", "/root/"+filepath.Base(tarball))
	return "/root/" + strings.TrimSuffix(filepath.Base(tarball), ".tar.gz")
}

// unit reads properties of kvnode.service in a VM.
func (c *vms) unit(v *vm, props ...string) map[string]string {
	c.t.Helper()
	args := []string{"systemctl", "show", "kvnode"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out := c.mustExec(v, args...)
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, val, ok := strings.Cut(l, "="); ok {
			m[k] = val
		}
	}
	return m
}

func (c *vms) eventually(what string, within time.Duration, check func() error) {
	c.t.Helper()
	deploytest.Eventually(c.t, what, within, check)
}

// getJSON GETs path from a node's HTTP port and decodes a 200.
func (c *vms) getJSON(v *vm, path string, out any) error {
	return deploytest.HTTPGetJSON(c.http, func(string) (string, error) { return "http://" + v.ip + ":8500", nil })(v.id, path, out)
}

// status is the part of /v1/cluster/status the test reads.
type status struct {
	ID           string `json:"id"`
	LeaderID     string `json:"leader_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Version      string `json:"version"`
}

// waitReady waits until every node is ready (/readyz, asked inside its VM
// with kvnode healthcheck --cluster, as install.sh does: a leader, caught
// up, every peer alive), all name the same leader, and every node lists
// every member at version want. It returns the leader's id.
func (c *vms) waitReady(want string) string {
	c.t.Helper()
	var leader string
	c.eventually("every node ready under one leader, at "+want, waitCluster, func() error {
		leader = ""
		for _, v := range c.list {
			if out, err := c.exec(v, "kvnode", "healthcheck", "--cluster", "--config", "/etc/troupe/kvnode.yaml"); err != nil {
				return fmt.Errorf("%s: %v", v.id, out)
			}
			var st status
			if err := c.getJSON(v, "/v1/cluster/status", &st); err != nil {
				return err
			}
			switch {
			case st.LeaderID == "":
				return fmt.Errorf("%s knows no leader", v.id)
			case leader != "" && st.LeaderID != leader:
				return fmt.Errorf("nodes disagree on the leader: %s and %s", leader, st.LeaderID)
			case st.Version != want:
				return fmt.Errorf("%s runs %q, want %q", v.id, st.Version, want)
			}
			leader = st.LeaderID
			var members []struct {
				ID      string `json:"id"`
				Voter   bool   `json:"voter"`
				Version string `json:"version"`
			}
			if err := c.getJSON(v, "/v1/cluster/members", &members); err != nil {
				return err
			}
			if len(members) != len(c.list) {
				return fmt.Errorf("%s lists %d members, want %d", v.id, len(members), len(c.list))
			}
			for _, m := range members {
				if !m.Voter || m.Version != want {
					return fmt.Errorf("%s says %s is voter %v at %q, want a voter at %q", v.id, m.ID, m.Voter, m.Version, want)
				}
			}
		}
		return nil
	})
	return leader
}

func (c *vms) byID(id string) *vm {
	c.t.Helper()
	for _, v := range c.list {
		if v.id == id {
			return v
		}
	}
	c.t.Fatalf("no VM runs %s", id)
	return nil
}

// checkHardening checks that kvnode runs as the troupe user with no
// capabilities and no way to gain privileges, and that the unit's mount
// sandbox holds: the root file system read-only, the data directory
// writable, /home hidden.
func (c *vms) checkHardening(v *vm) {
	c.t.Helper()
	pid := c.unit(v, "MainPID")["MainPID"]
	out := c.mustExec(v, "sh", "-c", fmt.Sprintf("stat -c %%U /proc/%s; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/%[1]s/status; cat /proc/%[1]s/mountinfo", pid))
	lines := strings.Split(out, "\n")
	if lines[0] != "troupe" {
		c.t.Errorf("%s: kvnode runs as %q, want troupe", v.host, lines[0])
	}
	for _, want := range []string{"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !slices.Contains(lines, want) {
			c.t.Errorf("%s: kvnode's status lacks %q", v.host, want)
		}
	}
	mounts := map[string]string{} // mount point -> options (the last mount wins)
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 5 && strings.Contains(l, " - ") {
			mounts[f[4]] = f[5]
		}
	}
	for point, want := range map[string]string{"/": "ro", "/var/lib/troupe": "rw", "/home": "ro", "/tmp": "rw"} {
		if opts := strings.Split(mounts[point], ","); len(opts) == 0 || opts[0] != want {
			c.t.Errorf("%s: kvnode sees %s mounted %q, want %s (is the unit's sandbox in force?)", v.host, point, mounts[point], want)
		}
	}
}

// TestVM3 installs a release on three stand-in VMs with install.sh, checks
// the cluster forms under systemd with the unit's hardening in force,
// kills the leader's kvnode with SIGKILL and sees systemd restart it and
// the node catch up, then upgrades every VM in turn with install.sh
// --upgrade under a steady writer: no acknowledged write may be lost, and
// every node must end on the new version.
func TestVM3(t *testing.T) {
	image, oldTar, newTar := setup(t)
	oldVersion, newVersion := tarVersion(t, oldTar), tarVersion(t, newTar)
	if oldVersion == newVersion {
		t.Fatalf("both tarballs are version %s: the upgrade needs two", oldVersion)
	}
	start := time.Now()
	c := boot(t, image, 3)
	t.Logf("%s: 3 VMs booted (systemd running)", since(start))

	var members []string
	for _, v := range c.list {
		members = append(members, v.id+"="+v.host+":8300")
	}
	installStart := time.Now()
	for _, v := range c.list {
		dir := c.unpack(v, oldTar)
		out := c.mustExec(v, dir+"/install.sh", "--node-id", v.id, "--advertise", v.host, "--initial-cluster", strings.Join(members, ","))
		t.Logf("%s: install.sh on %s:\n%s", since(start), v.host, out)
	}
	installed := time.Now()
	leader := c.waitReady(oldVersion)
	t.Logf("%s: cluster ready under systemd %s after the first install.sh began, %s after the last one returned (%s leads)",
		since(start), time.Since(installStart).Round(100*time.Millisecond), time.Since(installed).Round(100*time.Millisecond), leader)
	for _, v := range c.list {
		c.checkHardening(v)
	}
	if out := c.mustExec(c.list[0], "systemd-analyze", "verify", "/etc/systemd/system/kvnode.service"); out != "" {
		t.Logf("systemd-analyze verify: %s", out)
	}

	// install.sh again, as given: nothing changes, nothing restarts.
	v1 := c.list[0]
	before := c.unit(v1, "MainPID", "NRestarts")
	conf := c.mustExec(v1, "sha256sum", "/etc/troupe/kvnode.yaml")
	out := c.mustExec(v1, "/root/troupe-"+oldVersion+"-linux-amd64/install.sh", "--node-id", v1.id, "--advertise", v1.host, "--initial-cluster", strings.Join(members, ","))
	if after := c.unit(v1, "MainPID", "NRestarts"); after["MainPID"] != before["MainPID"] || c.mustExec(v1, "sha256sum", "/etc/troupe/kvnode.yaml") != conf {
		t.Fatalf("install.sh a second time restarted kvnode or rewrote its config (%v -> %v):\n%s", before, after, out)
	}
	// Another node id on an installed VM is refused, and changes nothing.
	if out, err := c.exec(v1, "/root/troupe-"+oldVersion+"-linux-amd64/install.sh", "--node-id", "n9", "--advertise", v1.host, "--initial-cluster", "n9=vm1:8300"); err == nil || !strings.Contains(out, "exists and differs") {
		t.Fatalf("install.sh with another node id: %v\n%s", err, out)
	}
	// An upgrade to the installed release changes nothing either.
	if out := c.mustExec(v1, "/root/troupe-"+oldVersion+"-linux-amd64/install.sh", "--upgrade"); !strings.Contains(out, "nothing to do") {
		t.Fatalf("install.sh --upgrade to the running release:\n%s", out)
	}

	// SIGKILL the leader's kvnode: systemd restarts it, the node catches up.
	w := c.startWriter("kill")
	w.WaitAcks(50, waitProgress)
	lv := c.byID(leader)
	before = c.unit(lv, "MainPID", "NRestarts")
	killed := time.Now()
	c.mustExec(lv, "systemctl", "kill", "-s", "KILL", "kvnode")
	c.eventually("systemd restarts kvnode on "+lv.host, waitCluster, func() error {
		now := c.unit(lv, "MainPID", "NRestarts", "ActiveState")
		if now["ActiveState"] != "active" || now["MainPID"] == before["MainPID"] || now["NRestarts"] == before["NRestarts"] {
			return fmt.Errorf("%v (before the kill %v)", now, before)
		}
		return nil
	})
	restarted := time.Since(killed)
	w.WaitAcks(w.Acks()+50, waitProgress)
	leader = c.waitReady(oldVersion)
	acked := w.Stop()
	t.Logf("%s: SIGKILL of %s's kvnode (the leader): systemd restarted it after %s, ready again after %s; writer: %s",
		since(start), lv.host, restarted.Round(100*time.Millisecond), time.Since(killed).Round(100*time.Millisecond), w)
	c.converge(acked)

	// Rolling upgrade, followers first, under a steady writer.
	order := slices.Clone(c.list)
	slices.SortStableFunc(order, func(a, b *vm) int {
		if a.id == leader {
			return 1
		}
		if b.id == leader {
			return -1
		}
		return 0
	})
	dirs := map[string]string{}
	for _, v := range order {
		dirs[v.id] = c.unpack(v, newTar)
	}
	w = c.startWriter("upgrade")
	w.WaitAcks(50, waitProgress)
	upStart := time.Now()
	for _, v := range order {
		t0 := time.Now()
		out := c.mustExec(v, dirs[v.id]+"/install.sh", "--upgrade")
		t.Logf("%s: install.sh --upgrade on %s (%s) took %s:\n%s", since(start), v.host, v.id, time.Since(t0).Round(100*time.Millisecond), out)
		if got := c.mustExec(v, "kvnode", "--version"); !strings.HasPrefix(got, "kvnode "+newVersion+" ") {
			t.Fatalf("%s: kvnode --version after the upgrade: %q", v.host, got)
		}
	}
	w.WaitAcks(w.Acks()+50, waitProgress)
	upgraded := time.Since(upStart)
	leader = c.waitReady(newVersion)
	more := w.Stop()
	t.Logf("%s: rolling upgrade %s -> %s of 3 VMs took %s; writer: %s", since(start), oldVersion, newVersion, upgraded.Round(100*time.Millisecond), w)
	for k, val := range more {
		acked[k] = val
	}
	c.converge(acked)
	for _, v := range c.list {
		c.checkHardening(v)
	}
	t.Logf("%s: every node at %s holds all %d acknowledged writes (%s leads)", since(start), newVersion, len(acked), leader)
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

// converge waits until every node has applied the same index and holds
// every acknowledged write, read from its own state and linearizably.
func (c *vms) converge(acked map[string]string) {
	c.t.Helper()
	var ids []string
	for _, v := range c.list {
		ids = append(ids, v.id)
	}
	deploytest.Converge(c.t, ids, func(id, path string, out any) error { return c.getJSON(c.byID(id), path, out) }, "vm", acked, waitConverge)
}

// writeEvery paces the writer: a steady 50 writes a second.
const writeEvery = 20 * time.Millisecond

// startWriter writes through every node in turn, moving on after a
// failure, as a client given every node's address would.
func (c *vms) startWriter(phase string) *deploytest.Writer {
	var urls []string
	for _, v := range c.list {
		urls = append(urls, "http://"+v.ip+":8500")
	}
	return deploytest.StartWriter(c.t, "vm/"+phase, urls, writeEvery)
}

// TestVM5 installs a release on five stand-in VMs from the tarball's own
// example configs (examples/5-nodes, TLS on both ports and ACLs on, their
// 10.0.0.x addresses replaced by the VMs'), the way docs/operations.md
// tells an operator to: install.sh --config --no-start, the certificates
// into /etc/troupe/tls, systemctl start. It checks that the cluster
// forms, bootstraps the ACLs, checks the members and a write over TLS
// with a token and that an anonymous write is refused, then upgrades the
// leader's VM with install.sh --upgrade, which refuses without the node's
// token and reads it from /etc/troupe/kvnode.env.
func TestVM5(t *testing.T) {
	image, oldTar, newTar := setup(t)
	oldVersion, newVersion := tarVersion(t, oldTar), tarVersion(t, newTar)
	start := time.Now()
	c := boot(t, image, 5)
	t.Logf("%s: 5 VMs booted (systemd running)", since(start))

	// The operator's machine: kvctl from the same tarball, a CA, a
	// certificate per node (naming its address) and one for the operator.
	admin := t.TempDir()
	c.must("tar", "-C", admin, "-xzf", oldTar)
	kvctl := filepath.Join(admin, strings.TrimSuffix(filepath.Base(oldTar), ".tar.gz"), "kvctl")
	tls := filepath.Join(admin, "tls")
	c.must(kvctl, "tls", "ca", "--dir", tls)
	for _, v := range c.list {
		c.must(kvctl, "tls", "cert", "--dir", tls, "--node", v.id, "--hosts", v.ip+","+v.host+",127.0.0.1")
	}
	c.must(kvctl, "tls", "cert", "--dir", tls, "--client", "ops")
	for _, v := range c.list { // what goes to each VM: the CA and its own pair
		dir := filepath.Join(admin, "tls-"+v.id)
		c.must("mkdir", dir)
		for _, f := range []string{"ca.pem", v.id + ".pem", v.id + "-key.pem"} {
			c.must("cp", filepath.Join(tls, f), dir)
		}
	}

	var sed []string
	for i, v := range c.list {
		sed = append(sed, "-e", fmt.Sprintf(`s/\b10\.0\.0\.%d\b/%s/g`, i+1, v.ip))
	}
	installStart := time.Now()
	for _, v := range c.list {
		dir := c.unpack(v, oldTar)
		conf := "/root/" + v.id + ".yaml"
		c.mustExec(v, "sh", "-c", fmt.Sprintf("sed %s %s/examples/5-nodes/%s.yaml >%s", shellJoin(sed), dir, v.id, conf))
		c.mustExec(v, dir+"/install.sh", "--config", conf, "--no-start")
		c.must("docker", "cp", filepath.Join(admin, "tls-"+v.id), v.container+":/root/tls")
		c.mustExec(v, "sh", "-c", "install -d -m 0750 -o root -g troupe /etc/troupe/tls && "+
			"install -m 0640 -o root -g troupe /root/tls/* /etc/troupe/tls/ && systemctl start kvnode")
	}
	started := time.Now()
	for _, v := range c.list {
		c.eventually(v.id+" ready", waitCluster, func() error {
			out, err := c.exec(v, "kvnode", "healthcheck", "--config", "/etc/troupe/kvnode.yaml")
			if err != nil {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	}
	t.Logf("%s: 5 nodes with TLS and ACLs ready under systemd %s after the first install.sh began, %s after the last node started",
		since(start), time.Since(installStart).Round(100*time.Millisecond), time.Since(started).Round(100*time.Millisecond))

	var addrs []string
	for _, v := range c.list {
		addrs = append(addrs, "https://"+v.ip+":8500")
	}
	ops := []string{kvctl, "--addr", strings.Join(addrs, ","), "--ca-file", filepath.Join(tls, "ca.pem"),
		"--cert-file", filepath.Join(tls, "ops.pem"), "--key-file", filepath.Join(tls, "ops-key.pem"), "-o", "json"}
	var boot struct{ SecretID string }
	if err := json.Unmarshal([]byte(c.must(append(ops, "acl", "bootstrap")...)), &boot); err != nil || boot.SecretID == "" {
		t.Fatalf("kvctl acl bootstrap: %v", err)
	}
	if out, err := run(append(ops, "put", "vm/anonymous", "x")...); err == nil || !strings.Contains(out, "HTTP 401") {
		t.Fatalf("an anonymous write with ACLs on: %v\n%s", err, out)
	}
	ops = append(ops, "--token", boot.SecretID)
	c.must(append(ops, "put", "vm/hello", "world")...)

	// Every node, asked in its VM with the token, sees every member alive.
	var leader string
	for _, v := range c.list {
		c.eventually(v.id+" sees every member alive", waitCluster, func() error {
			out, err := c.exec(v, "env", "TROUPE_ACL_TOKEN="+boot.SecretID, "kvnode", "healthcheck", "--cluster", "--config", "/etc/troupe/kvnode.yaml")
			if err != nil || !strings.Contains(out, "5 members, every peer alive; runs "+oldVersion) {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	}
	var members []struct {
		ID     string `json:"id"`
		Voter  bool   `json:"voter"`
		Leader bool   `json:"leader"`
	}
	if err := json.Unmarshal([]byte(c.must(append(ops, "members")...)), &members); err != nil || len(members) != 5 {
		t.Fatalf("kvctl members: %d members, %v", len(members), err)
	}
	for _, m := range members {
		if !m.Voter {
			t.Errorf("%s is not a voter", m.ID)
		}
		if m.Leader {
			leader = m.ID
		}
	}

	// The leader's VM upgraded: refused, changing nothing, until the
	// node's token is in kvnode.env.
	lv := c.byID(leader)
	dir := c.unpack(lv, newTar)
	if out, err := c.exec(lv, dir+"/install.sh", "--upgrade"); err == nil || !strings.Contains(out, "ACLs are on: put the node's management token in /etc/troupe/kvnode.env") {
		t.Fatalf("install.sh --upgrade without the node's token: %v\n%s", err, out)
	}
	if got := c.mustExec(lv, "kvnode", "--version"); !strings.HasPrefix(got, "kvnode "+oldVersion+" ") {
		t.Fatalf("a refused upgrade replaced kvnode: %s", got)
	}
	c.mustExec(lv, "sh", "-c", "umask 027 && echo TROUPE_ACL_TOKEN="+boot.SecretID+" >/etc/troupe/kvnode.env && chgrp troupe /etc/troupe/kvnode.env")
	out := c.mustExec(lv, dir+"/install.sh", "--upgrade")
	t.Logf("%s: install.sh --upgrade on %s (%s, the leader):\n%s", since(start), lv.host, lv.id, out)
	if !strings.Contains(out, "runs "+newVersion) {
		t.Fatalf("the upgraded node does not say it runs %s", newVersion)
	}
	var got struct{ Value []byte }
	if err := json.Unmarshal([]byte(c.must(append(ops, "get", "vm/hello")...)), &got); err != nil {
		t.Fatalf("kvctl get: %v", err)
	}
	if string(got.Value) != "world" {
		t.Fatalf("vm/hello = %q after the upgrade, want world", got.Value)
	}
	t.Logf("%s: 5-node cluster checked", since(start))
}

// shellJoin quotes words for sh -c.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
