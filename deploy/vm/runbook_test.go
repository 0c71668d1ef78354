package vm

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestVMRunbook runs the procedures of docs/operations.md on stand-in VMs,
// with the commands the document gives, in its order: install three VMs,
// take a backup, replace a VM that died for good (a new one joins as a
// non-voter, catches up, is promoted, and the dead one is removed) under a
// steady writer, restore the backup, then lose a majority for good and
// recover the survivor with kvnode recover and a fresh VM joining it.
// Each step checks the data: no acknowledged write is lost, a restore
// brings back exactly the backup, a recovery keeps the survivor's data.
func TestVMRunbook(t *testing.T) {
	image, tarball, _ := setup(t)
	version := tarVersion(t, tarball)
	start := time.Now()
	c := boot(t, image, 5)
	vm1, vm2, vm3, vm4, vm5 := c.all[0], c.all[1], c.all[2], c.all[3], c.all[4]
	c.list = []*vm{vm1, vm2, vm3}
	dirs := map[*vm]string{}
	for _, v := range c.all {
		dirs[v] = c.unpack(v, tarball)
	}
	t.Logf("%s: 5 VMs booted, the release unpacked on each", since(start))

	// Install: three VMs, one initial cluster.
	cluster := "n1=vm1:8300,n2=vm2:8300,n3=vm3:8300"
	for _, v := range c.list {
		c.mustExec(v, dirs[v]+"/install.sh", "--node-id", v.id, "--advertise", v.host, "--initial-cluster", cluster)
	}
	c.waitReady(version)

	// Backup: writes, then kvctl snapshot save and inspect on a VM.
	w := c.startWriter("backup")
	w.WaitAcks(100, waitProgress)
	backedUp := w.Stop()
	c.mustExec(vm1, "kvctl", "snapshot", "save", "/root/troupe.snap")
	if out := c.mustExec(vm1, "kvctl", "snapshot", "inspect", "/root/troupe.snap"); !strings.Contains(out, "ok") {
		t.Fatalf("kvctl snapshot inspect:\n%s", out)
	}
	c.mustExec(vm1, "kvctl", "put", "vm/after-backup", "gone after the restore")
	t.Logf("%s: %d writes, then a backup saved and inspected on vm1", since(start), len(backedUp))

	// Replace a dead VM: vm3 dies for good; vm4 joins as a non-voter,
	// is promoted once caught up, and n3 is removed. The writer keeps
	// being acknowledged at every step: the cluster never loses quorum.
	c.must("docker", "kill", vm3.container)
	c.list = []*vm{vm1, vm2}
	w = c.startWriter("replace")
	w.WaitAcks(50, waitProgress)
	c.mustExec(vm4, dirs[vm4]+"/install.sh", "--node-id", "n4", "--advertise", "vm4", "--join", "vm1:8500,vm2:8500", "--nonvoter")
	c.eventually("n4 joined as a non-voter", waitCluster, func() error {
		return c.memberIs(vm1, "n4", "nonvoter")
	})
	w.WaitAcks(w.Acks()+50, waitProgress)
	c.mustExec(vm1, "kvctl", "members", "promote", "n4", "--wait", "2m")
	w.WaitAcks(w.Acks()+50, waitProgress)
	c.mustExec(vm1, "kvctl", "members", "remove", "n3")
	w.WaitAcks(w.Acks()+50, waitProgress)
	c.list = []*vm{vm1, vm2, vm4}
	c.waitReady(version)
	replaced := w.Stop()
	c.converge(replaced)
	t.Logf("%s: dead vm3 replaced by vm4 (non-voter, promoted, n3 removed); writer: %s", since(start), w)

	// Restore the backup, through another VM: the cluster holds the
	// backup's keys again and nothing written after it.
	snap := copyBetween(c, vm1, vm2, "/root/troupe.snap")
	c.mustExec(vm2, "kvctl", "snapshot", "restore", snap)
	c.converge(backedUp)
	for _, v := range c.list {
		if out, err := c.exec(v, "kvctl", "get", "vm/after-backup"); err == nil {
			t.Fatalf("%s still holds a key written after the backup: %s", v.id, out)
		}
		if err := c.absent(v, "replace"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: backup restored through vm2: %d keys back, later writes gone", since(start), len(backedUp))

	// A majority lost for good: vm2 and vm4 die. On vm1, stop kvnode,
	// recover it as a one-node cluster, start it; vm5 joins it afresh.
	c.must("docker", "kill", vm2.container, vm4.container)
	c.mustExec(vm1, "systemctl", "stop", "kvnode")
	out := c.mustExec(vm1, "runuser", "-u", "troupe", "--", "kvnode", "recover", "--config", "/etc/troupe/kvnode.yaml", "--members", "n1=vm1:8300")
	t.Logf("kvnode recover: %s", out)
	c.mustExec(vm1, "systemctl", "start", "kvnode")
	c.list = []*vm{vm1}
	c.waitReady(version)
	c.mustExec(vm5, dirs[vm5]+"/install.sh", "--node-id", "n5", "--advertise", "vm5", "--join", "vm1:8500", "--wait")
	c.list = []*vm{vm1, vm5}
	c.waitReady(version)
	c.converge(backedUp)
	c.mustExec(vm5, "kvctl", "put", "vm/recovered", "yes")
	t.Logf("%s: majority lost; vm1 recovered alone with its data, vm5 joined it", since(start))
}

// memberIs checks that, as v's node sees it, id is a member of the given
// suffrage (voter or nonvoter).
func (c *vms) memberIs(v *vm, id, suffrage string) error {
	out, err := c.exec(v, "kvctl", "-o", "json", "members")
	if err != nil {
		return err
	}
	var members []struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	}
	if err := json.Unmarshal([]byte(out), &members); err != nil {
		return fmt.Errorf("kvctl members: %v: %s", err, out)
	}
	i := slices.IndexFunc(members, func(m struct {
		ID       string `json:"id"`
		Suffrage string `json:"suffrage"`
	}) bool {
		return m.ID == id
	})
	if i < 0 || members[i].Suffrage != suffrage {
		return fmt.Errorf("%s is not a %s member: %s", id, suffrage, out)
	}
	return nil
}

// absent checks that v holds no key of a writer's phase.
func (c *vms) absent(v *vm, phase string) error {
	var keys []string
	err := c.getJSON(v, "/v1/kv/vm/"+phase+"/?keys&stale", &keys)
	if err == nil && len(keys) > 0 {
		return fmt.Errorf("%s holds %d keys of %s written after the backup", v.id, len(keys), phase)
	}
	return nil
}

// copyBetween copies a file from one VM to the same path on another,
// through the host, as an operator would with scp.
func copyBetween(c *vms, from, to *vm, path string) string {
	c.t.Helper()
	local := c.t.TempDir() + "/copy"
	c.must("docker", "cp", from.container+":"+path, local)
	c.must("docker", "cp", local, to.container+":"+path)
	return path
}
