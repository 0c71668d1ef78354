package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Disk is a small tmpfs for full-disk tests. Mounting needs root, as CI
// has; without it the test is skipped.
type Disk struct {
	// Dir is the mount point.
	Dir    string
	t      testing.TB
	filler string
}

// SmallDisk mounts a tmpfs of size bytes on a new temporary directory,
// unmounted when the test ends.
func SmallDisk(t testing.TB, size int) *Disk {
	t.Helper()
	return SmallDiskAt(t, t.TempDir(), size)
}

// SmallDiskAt mounts a tmpfs of size bytes on dir (created if missing),
// e.g. a node's data directory before the node starts.
func SmallDiskAt(t testing.TB, dir string, size int) *Disk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return &Disk{Dir: dir, t: t, filler: filepath.Join(dir, "filler")}
}

// FreeBytes is what the file system has free.
func (d *Disk) FreeBytes() int64 {
	d.t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Dir, &st); err != nil {
		d.t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// Fill writes a filler file until at most leave bytes are free (0: until
// a write fails, the disk is full).
func (d *Disk) Fill(leave int64) {
	d.t.Helper()
	f, err := os.OpenFile(d.filler, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	for leave == 0 || d.FreeBytes() > leave {
		if _, err := f.Write(block); err != nil {
			return // full
		}
	}
}

// Free gives the filler's space back.
func (d *Disk) Free() {
	d.t.Helper()
	if err := os.Remove(d.filler); err != nil {
		d.t.Fatal(err)
	}
}
