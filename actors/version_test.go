package actors_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/version"
)

// testBuild gives each node a build of its own, so a version seen on
// another node can only have come from that node.
func testBuild(id string) version.Build {
	return version.Build{Version: "v9.9.9-" + id, Commit: "commit-" + id, GoVersion: "go-test"}
}

// TestVersionIsReported: each node reports its own build in
// /v1/cluster/status and troupe_build_info, and learns every other
// member's version from its answers to the failure detector's probes, so
// /v1/cluster/members on any node names each member's release.
func TestVersionIsReported(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{Build: testBuild})
	inproc.Leader(t, nodes)
	for _, nd := range nodes {
		want := testBuild(nd.ID)
		code, body, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/v1/cluster/status", "")
		var st cluster.Status
		if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status of %s: %d %s %v", nd.ID, code, body, err)
		}
		if st.Version != want.Version || st.Commit != want.Commit || st.GoVersion != want.GoVersion {
			t.Fatalf("status of %s names build %q %q %q, want %+v", nd.ID, st.Version, st.Commit, st.GoVersion, want)
		}
		_, metrics, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", "")
		line := fmt.Sprintf(`troupe_build_info{commit=%q,goversion=%q,version=%q} 1`, want.Commit, want.GoVersion, want.Version)
		if err != nil || !strings.Contains(metrics, line+"\n") {
			t.Fatalf("metrics of %s lack %s (%v)", nd.ID, line, err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, nd := range nodes {
		for {
			_, body, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/v1/cluster/members", "")
			var ms []cluster.Member
			all := err == nil && json.Unmarshal([]byte(body), &ms) == nil && len(ms) == len(nodes)
			for _, m := range ms {
				all = all && m.Version == testBuild(m.ID).Version
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("members on %s never named every member's version: %s %v", nd.ID, body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
