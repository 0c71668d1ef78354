package docker

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// composeFile is the part of a compose file these checks read.
type composeFile struct {
	Version  string                    `yaml:"version"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]any            `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Hostname    string            `yaml:"hostname"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Networks    []string          `yaml:"networks"`
}

func readCompose(t *testing.T, name string) composeFile {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// TestComposeFiles checks that the 3- and 5-node files describe one
// cluster each: every node lists the same members, advertises itself by
// its service name on Consul's ports, keeps its data on a volume of its
// own, publishes a host port no other node uses, and is on the private
// network; that every variable is a kvnode setting; and that fault
// injection is on only in the chaos overrides, for exactly their nodes.
func TestComposeFiles(t *testing.T) {
	known := deploytest.EnvNames(t)
	for _, c := range []struct {
		file, chaos string
		nodes       int
	}{
		{"docker-compose.yml", "docker-compose.chaos.yml", 3},
		{"docker-compose.5.yml", "docker-compose.5.chaos.yml", 5},
	} {
		f := readCompose(t, c.file)
		var ids, members []string
		for i := 1; i <= c.nodes; i++ {
			id := fmt.Sprintf("n%d", i)
			ids = append(ids, id)
			members = append(members, id+"="+id+":8300")
		}
		if got := slices.Sorted(maps.Keys(f.Services)); !slices.Equal(got, ids) {
			t.Fatalf("%s: services %v, want %v", c.file, got, ids)
		}
		if f.Version != "2.4" {
			t.Errorf("%s: version %q: docker-compose 1.29 is what this is tested with, at 2.4", c.file, f.Version)
		}
		if len(f.Networks) != 1 {
			t.Errorf("%s: networks %v, want the one private network", c.file, f.Networks)
		}
		hostPorts := map[string]string{}
		for i, id := range ids {
			s := f.Services[id]
			env := s.Environment
			want := map[string]string{
				"TROUPE_NODE_ID":         id,
				"TROUPE_ADVERTISE_HTTP":  id + ":8500",
				"TROUPE_ADVERTISE_RAFT":  id + ":8300",
				"TROUPE_INITIAL_CLUSTER": strings.Join(members, ","),
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s: %s: %s=%q, want %q", c.file, id, k, env[k], v)
				}
			}
			for k := range env {
				if !known[k] {
					t.Errorf("%s: %s: %s is not a kvnode setting (docs/configuration.md)", c.file, id, k)
				}
			}
			if _, on := env["TROUPE_CHAOS"]; on {
				t.Errorf("%s: %s: chaos belongs in %s only", c.file, id, c.chaos)
			}
			if s.Hostname != id || !strings.HasPrefix(s.Image, "${TROUPE_IMAGE:-troupe/kvnode:") {
				t.Errorf("%s: %s: hostname %q, image %q", c.file, id, s.Hostname, s.Image)
			}
			if want := []string{id + "-data:/var/lib/troupe"}; !slices.Equal(s.Volumes, want) {
				t.Errorf("%s: %s: volumes %v, want %v", c.file, id, s.Volumes, want)
			}
			if _, ok := f.Volumes[id+"-data"]; !ok {
				t.Errorf("%s: volume %s-data is not declared", c.file, id)
			}
			wantPort := fmt.Sprintf("127.0.0.1:${TROUPE_%s_PORT:-%d}:8500", strings.ToUpper(id), 8501+i)
			if !slices.Equal(s.Ports, []string{wantPort}) {
				t.Errorf("%s: %s: ports %v, want [%s]", c.file, id, s.Ports, wantPort)
			}
			for _, p := range s.Ports {
				if other, dup := hostPorts[p]; dup {
					t.Errorf("%s: %s and %s publish the same port %s", c.file, other, id, p)
				}
				hostPorts[p] = id
			}
			if _, declared := f.Networks[firstOr(s.Networks)]; len(s.Networks) != 1 || !declared {
				t.Errorf("%s: %s: networks %v, want the file's private network", c.file, id, s.Networks)
			}
		}

		over := readCompose(t, c.chaos)
		if got := slices.Sorted(maps.Keys(over.Services)); !slices.Equal(got, ids) {
			t.Fatalf("%s: services %v, want %v (those of %s)", c.chaos, got, ids, c.file)
		}
		for id, s := range over.Services {
			if len(s.Environment) != 1 || s.Environment["TROUPE_CHAOS"] != "true" || s.Image != "" || len(s.Ports) > 0 || len(s.Volumes) > 0 {
				t.Errorf("%s: %s: an override that turns chaos on and changes nothing else, got %+v", c.chaos, id, s)
			}
		}
	}
}

// TestDockerfile checks the image's contract: from scratch, a numeric
// non-root user, the data directory on a volume where kvnode keeps it,
// Consul's ports, a health check that needs no shell.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
	}
	for _, want := range []string{
		"FROM scratch",
		"COPY --chown=10001:10001 data/ /var/lib/troupe/",
		"USER 10001:10001",
		"VOLUME /var/lib/troupe",
		"EXPOSE 8500 8300",
		`ENTRYPOINT ["/kvnode"]`,
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{
		"TROUPE_DATA_DIR=/var/lib/troupe", "TROUPE_HTTP_ADDR=0.0.0.0:8500", "TROUPE_RAFT_ADDR=0.0.0.0:8300",
		`CMD ["/kvnode", "healthcheck"]`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(joined, "CMD-SHELL") || regexp.MustCompile(`(?m)^(RUN|HEALTHCHECK .* CMD [^\[])`).MatchString(joined) {
		t.Error("Dockerfile needs a shell (RUN, or a HEALTHCHECK in shell form), which scratch lacks")
	}
}

func firstOr(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}
