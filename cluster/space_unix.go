//go:build unix

package cluster

import "syscall"

// freeBytes is what the file system holding dir has free for an
// unprivileged writer (statfs's f_bavail).
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
