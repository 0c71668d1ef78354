// Package vm holds the tests of the VM deployment: the static checks of
// the unit file, install.sh and the example configs (files_test.go, in
// every `go test ./...`) and the stand-in VM test against Debian
// containers with systemd as PID 1 (vm_test.go, run by `make vm-test`).
package vm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// unitFile reads a systemd unit: section -> key -> values (a key may
// repeat).
func unitFile(t *testing.T, name string) map[string]map[string][]string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	section := ""
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", name, i+1, l)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// scriptVar is NAME=value as install.sh sets it at the top, with the
// $OTHER variables in it expanded.
func scriptVar(t *testing.T, script, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("install.sh sets no %s", name)
	}
	return regexp.MustCompile(`\$[A-Z_]+`).ReplaceAllStringFunc(m[1], func(ref string) string {
		return scriptVar(t, script, ref[1:])
	})
}

// TestUnitFile checks the unit's contract with kvnode and install.sh: it
// runs the installed binary with the installed config as the user
// install.sh creates, waits for kvnode's sd_notify, restarts on failure
// but not on a bad configuration (kvnode's exit 78), may write only the
// data directory, and gives a graceful stop more time than kvnode takes.
func TestUnitFile(t *testing.T) {
	u := unitFile(t, "../systemd/kvnode.service")
	data, err := os.ReadFile("install.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(data)
	bin, config, envFile := scriptVar(t, script, "BIN_DIR"), scriptVar(t, script, "CONFIG"), scriptVar(t, script, "ENV_FILE")
	dataDir, user := scriptVar(t, script, "DATA_DIR"), scriptVar(t, script, "USER_NAME")
	if got := scriptVar(t, script, "UNIT_PATH"); got != "/etc/systemd/system/kvnode.service" {
		t.Errorf("install.sh installs the unit as %s", got)
	}

	svc := u["Service"]
	want := map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"User":                     user,
		"Group":                    user,
		"ExecStart":                bin + "/kvnode --config " + config,
		"EnvironmentFile":          "-" + envFile,
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "78",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ReadWritePaths":           dataDir,
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"CapabilityBoundingSet":    "",
		"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6",
		"KillSignal":               "SIGTERM",
		"ExecReload":               "/bin/kill -HUP $MAINPID",
		"StartLimitIntervalSec":    "", // belongs in [Unit]
		"StartLimitBurst":          "",
		"MemoryDenyWriteExecute":   "yes",
		"SystemCallArchitectures":  "native",
		"ProtectKernelTunables":    "yes",
		"ProtectControlGroups":     "yes",
		"RestrictSUIDSGID":         "yes",
		"LockPersonality":          "yes",
		"RestrictNamespaces":       "yes",
		"PrivateDevices":           "yes",
		"ProtectKernelModules":     "yes",
		"ProtectClock":             "yes",
		"ProtectHostname":          "yes",
		"ProtectKernelLogs":        "yes",
		"RestrictRealtime":         "yes",
		"UMask":                    "0077",
		"LimitNOFILE":              "65536",
		"TimeoutStartSec":          "10min",
		"RestartSec":               "2",
		"TimeoutStopSec":           "30",
	}
	for k, v := range want {
		got := svc[k]
		if k == "StartLimitIntervalSec" || k == "StartLimitBurst" {
			if len(got) > 0 || len(u["Unit"][k]) != 1 {
				t.Errorf("%s belongs in [Unit] (systemd ignores it in [Service])", k)
			}
			continue
		}
		if len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy=%q", got)
	}
	stop, err := time.ParseDuration(svc["TimeoutStopSec"][0] + "s")
	if err != nil {
		t.Fatal(err)
	}
	if shut := deploytest.ShutdownTimeout(t); stop < shut+10*time.Second {
		t.Errorf("TimeoutStopSec=%s leaves too little above kvnode's own %s bound on a graceful stop", stop, shut)
	}
	// install.sh creates the data directory the unit may write, and the
	// user the unit runs as.
	for _, want := range []string{`install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$DATA_DIR"`, `useradd --system`} {
		if !strings.Contains(script, want) {
			t.Errorf("install.sh lacks %q", want)
		}
	}
}

// TestInstallScript checks install.sh parses, and that the release puts it
// beside the binaries and the unit, with the example configs.
func TestInstallScript(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "install.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n install.sh: %v\n%s", err, out)
	}
	if fi, err := os.Stat("install.sh"); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("install.sh is not executable (%v)", err)
	}
	release, err := os.ReadFile("../release.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cp deploy/systemd/kvnode.service deploy/vm/install.sh", "deploy/vm/examples/."} {
		if !strings.Contains(string(release), want) {
			t.Errorf("deploy/release.sh does not put %q into the tarball", want)
		}
	}
}

// TestExampleConfigs checks the 3- and 5-node examples: every key is a
// kvnode setting, each file is node n<i> at 10.0.0.<i> with its own
// certificate, every node lists the same initial_cluster, which is the
// nodes' advertised Raft addresses, and the data directory is the one
// the unit may write.
func TestExampleConfigs(t *testing.T) {
	keys := deploytest.Settings(t)
	unit := unitFile(t, "../systemd/kvnode.service")
	for _, n := range []int{3, 5} {
		dir := filepath.Join("examples", fmt.Sprintf("%d-nodes", n))
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if len(files) != n {
			t.Fatalf("%s: %d files, want %d", dir, len(files), n)
		}
		var members []string
		for i := 1; i <= n; i++ {
			members = append(members, fmt.Sprintf("n%d=10.0.0.%d:8300", i, i))
		}
		for i := 1; i <= n; i++ {
			name := filepath.Join(dir, fmt.Sprintf("n%d.yaml", i))
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var conf map[string]any
			if err := yaml.Unmarshal(data, &conf); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for k := range conf {
				if !keys[k] {
					t.Errorf("%s: %s is not a kvnode setting (docs/configuration.md)", name, k)
				}
			}
			id, ip := fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d", i)
			for k, v := range map[string]any{
				"node_id":             id,
				"data_dir":            unit["Service"]["ReadWritePaths"][0],
				"http_addr":           "0.0.0.0:8500",
				"advertise_http":      ip + ":8500",
				"raft_addr":           "0.0.0.0:8300",
				"advertise_raft":      ip + ":8300",
				"initial_cluster":     strings.Join(members, ","),
				"tls_ca_file":         "/etc/troupe/tls/ca.pem",
				"tls_cert_file":       "/etc/troupe/tls/" + id + ".pem",
				"tls_key_file":        "/etc/troupe/tls/" + id + "-key.pem",
				"tls_verify_incoming": true,
				"acl_enabled":         true,
			} {
				if conf[k] != v {
					t.Errorf("%s: %s: %v, want %v", name, k, conf[k], v)
				}
			}
		}
	}
	env, err := os.ReadFile("examples/kvnode.env")
	if err != nil {
		t.Fatal(err)
	}
	known := deploytest.EnvNames(t)
	for _, m := range regexp.MustCompile(`(?m)^#?\s*(TROUPE_[A-Z_]+)=`).FindAllStringSubmatch(string(env), -1) {
		if !known[m[1]] {
			t.Errorf("examples/kvnode.env: %s is not a kvnode setting", m[1])
		}
	}
}
