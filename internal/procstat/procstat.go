// Package procstat reads a process's memory figures from Linux's
// /proc/<pid>/status: for kvnode's trim of mapped memory, the benchmark
// harness and the tests that check resident memory.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// Status returns the "kB" fields of /proc/<pid>/status in bytes, keyed
// by name without the colon (VmRSS, RssAnon, RssFile, ...); pid 0 means
// this process. It is empty where /proc is missing.
func Status(pid int) map[string]int64 {
	out := map[string]int64{}
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] = kb * 1024
		}
	}
	return out
}
