//go:build unix

package cluster

import "syscall"

// diskSpace is what the file system holding dir has free for an
// unprivileged writer (statfs's f_bavail) and its size.
func diskSpace(dir string) (free, size int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
