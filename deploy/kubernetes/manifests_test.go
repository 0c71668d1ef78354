// Package kubernetes holds the test of the Kubernetes manifests: every
// file parses, and the manifests agree with each other, with the image
// (deploy/docker/Dockerfile) and with kvnode's settings. There is no
// cluster to apply them to here; docs/operations.md says so.
package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/troupe-kv/troupe/internal/deploytest"
)

// The parts of each kind the checks read.
type (
	meta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	object struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   meta   `yaml:"metadata"`
	}
	labelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	containerPort struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
		PeriodSeconds    int `yaml:"periodSeconds"`
		FailureThreshold int `yaml:"failureThreshold"`
	}
	envVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	container struct {
		Name            string          `yaml:"name"`
		Image           string          `yaml:"image"`
		Env             []envVar        `yaml:"env"`
		Ports           []containerPort `yaml:"ports"`
		StartupProbe    *probe          `yaml:"startupProbe"`
		LivenessProbe   *probe          `yaml:"livenessProbe"`
		ReadinessProbe  *probe          `yaml:"readinessProbe"`
		SecurityContext struct {
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
			Capabilities             struct {
				Drop []string `yaml:"drop"`
			} `yaml:"capabilities"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	statefulSet struct {
		object `yaml:",inline"`
		Spec   struct {
			ServiceName         string        `yaml:"serviceName"`
			Replicas            int           `yaml:"replicas"`
			PodManagementPolicy string        `yaml:"podManagementPolicy"`
			Selector            labelSelector `yaml:"selector"`
			Template            struct {
				Metadata meta `yaml:"metadata"`
				Spec     struct {
					TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
						RunAsUser    int  `yaml:"runAsUser"`
						RunAsGroup   int  `yaml:"runAsGroup"`
						FSGroup      int  `yaml:"fsGroup"`
					} `yaml:"securityContext"`
					Affinity struct {
						PodAntiAffinity struct {
							Preferred []struct {
								PodAffinityTerm struct {
									LabelSelector labelSelector `yaml:"labelSelector"`
								} `yaml:"podAffinityTerm"`
							} `yaml:"preferredDuringSchedulingIgnoredDuringExecution"`
						} `yaml:"podAntiAffinity"`
					} `yaml:"affinity"`
					Containers []container `yaml:"containers"`
					Volumes    []struct {
						Name      string `yaml:"name"`
						ConfigMap *struct {
							Name string `yaml:"name"`
						} `yaml:"configMap"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
			VolumeClaimTemplates []struct {
				Metadata meta `yaml:"metadata"`
				Spec     struct {
					AccessModes []string `yaml:"accessModes"`
					Resources   struct {
						Requests map[string]string `yaml:"requests"`
					} `yaml:"resources"`
				} `yaml:"spec"`
			} `yaml:"volumeClaimTemplates"`
		} `yaml:"spec"`
	}
	service struct {
		object `yaml:",inline"`
		Spec   struct {
			ClusterIP                string            `yaml:"clusterIP"`
			PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
			Selector                 map[string]string `yaml:"selector"`
			Ports                    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	configMap struct {
		object `yaml:",inline"`
		Data   map[string]string `yaml:"data"`
	}
	podDisruptionBudget struct {
		object `yaml:",inline"`
		Spec   struct {
			MaxUnavailable *int          `yaml:"maxUnavailable"`
			MinAvailable   *int          `yaml:"minAvailable"`
			Selector       labelSelector `yaml:"selector"`
		} `yaml:"spec"`
	}
)

// manifests is every object in the directory's manifests, by kind.
type manifests struct {
	statefulSets []statefulSet
	services     []service
	configMaps   []configMap
	pdbs         []podDisruptionBudget
}

// apiVersions are the kinds the manifests may hold, at the API versions
// current Kubernetes serves.
var apiVersions = map[string]string{
	"StatefulSet":         "apps/v1",
	"Service":             "v1",
	"ConfigMap":           "v1",
	"PodDisruptionBudget": "policy/v1",
}

// load parses every document of every file named in kustomization.yaml,
// which must name every other YAML file here.
func load(t *testing.T) manifests {
	t.Helper()
	var kust struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
		Images     []struct {
			Name string `yaml:"name"`
		} `yaml:"images"`
	}
	decodeFile(t, "kustomization.yaml", &kust)
	if kust.Kind != "Kustomization" || kust.APIVersion != "kustomize.config.k8s.io/v1beta1" {
		t.Errorf("kustomization.yaml: %s %s", kust.APIVersion, kust.Kind)
	}
	files, _ := filepath.Glob("*.yaml")
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	if got := slices.Sorted(slices.Values(kust.Resources)); !slices.Equal(got, files) {
		t.Errorf("kustomization.yaml lists %v; the manifests here are %v", got, files)
	}

	var m manifests
	seen := map[string]string{} // kind/name -> file
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			var o object
			if err := doc.Decode(&o); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			where := fmt.Sprintf("%s: document %d (%s %q)", f, i, o.Kind, o.Metadata.Name)
			if want, ok := apiVersions[o.Kind]; !ok || o.APIVersion != want {
				t.Errorf("%s: apiVersion %q, kind %q: want one of %v", where, o.APIVersion, o.Kind, apiVersions)
			}
			if o.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			if o.Metadata.Labels["app.kubernetes.io/name"] != "troupe" {
				t.Errorf("%s: no label app.kubernetes.io/name: troupe", where)
			}
			if prev, dup := seen[o.Kind+"/"+o.Metadata.Name]; dup {
				t.Errorf("%s: %s %s is also in %s", where, o.Kind, o.Metadata.Name, prev)
			}
			seen[o.Kind+"/"+o.Metadata.Name] = f
			var into any
			switch o.Kind {
			case "StatefulSet":
				m.statefulSets = append(m.statefulSets, statefulSet{})
				into = &m.statefulSets[len(m.statefulSets)-1]
			case "Service":
				m.services = append(m.services, service{})
				into = &m.services[len(m.services)-1]
			case "ConfigMap":
				m.configMaps = append(m.configMaps, configMap{})
				into = &m.configMaps[len(m.configMaps)-1]
			case "PodDisruptionBudget":
				m.pdbs = append(m.pdbs, podDisruptionBudget{})
				into = &m.pdbs[len(m.pdbs)-1]
			default:
				continue
			}
			if err := doc.Decode(into); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		}
	}
	if len(m.statefulSets) != 1 || len(m.services) != 2 || len(m.configMaps) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("want one StatefulSet, two Services, one ConfigMap, one PodDisruptionBudget; got %d, %d, %d, %d",
			len(m.statefulSets), len(m.services), len(m.configMaps), len(m.pdbs))
	}
	for _, img := range kust.Images {
		if img.Name != imageName(m.statefulSets[0].Spec.Template.Spec.Containers[0].Image) {
			t.Errorf("kustomization.yaml retags image %q, which no container runs", img.Name)
		}
	}
	return m
}

func decodeFile(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func imageName(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

// selects reports whether a selector (all of its labels) picks pods
// with these labels; an empty selector picks nothing here.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// image is what deploy/docker/Dockerfile promises: its user, its
// environment (TROUPE_* defaults the pods inherit).
type image struct {
	uid, gid int
	env      map[string]string
}

func readImage(t *testing.T) image {
	t.Helper()
	data, err := os.ReadFile("../docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	img := image{env: map[string]string{}}
	m := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("Dockerfile: no USER uid:gid")
	}
	img.uid, _ = strconv.Atoi(m[1])
	img.gid, _ = strconv.Atoi(m[2])
	for _, l := range regexp.MustCompile(`(?m)^ENV (.*)$`).FindAllStringSubmatch(text, -1) {
		for _, kv := range strings.Fields(l[1]) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				img.env[k] = v
			}
		}
	}
	return img
}

// port is the port number of a host:port.
func port(t *testing.T, addr string) int {
	t.Helper()
	p, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	if err != nil {
		t.Fatalf("%q has no port: %v", addr, err)
	}
	return p
}

// TestManifests parses every manifest and checks the cross-references:
// labels and selectors, the StatefulSet's headless Service, named ports
// and the probes and Services that use them, the ConfigMap the pods
// mount and the file in it kvnode reads, the settings in that file and
// in the pods' environment, and the image's user, data directory and
// ports.
func TestManifests(t *testing.T) {
	m := load(t)
	img := readImage(t)
	settings, envNames := deploytest.Settings(t), deploytest.EnvNames(t)
	sts := m.statefulSets[0]
	spec, pod := sts.Spec, sts.Spec.Template.Spec
	podLabels := sts.Spec.Template.Metadata.Labels
	name := func(s string) string { return "StatefulSet " + sts.Metadata.Name + ": " + s }

	// Labels and selectors.
	if !selects(spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s", name(fmt.Sprintf("selector %v does not match the pod labels %v", spec.Selector.MatchLabels, podLabels)))
	}
	for _, p := range pod.Affinity.PodAntiAffinity.Preferred {
		if !selects(p.PodAffinityTerm.LabelSelector.MatchLabels, podLabels) {
			t.Errorf("%s", name("the anti-affinity's selector does not match the pods"))
		}
	}
	for _, b := range m.pdbs {
		if !selects(b.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget %s: selector %v does not match the pods %v", b.Metadata.Name, b.Spec.Selector.MatchLabels, podLabels)
		}
		if b.Spec.MaxUnavailable == nil || *b.Spec.MaxUnavailable != 1 || b.Spec.MinAvailable != nil {
			t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1 (and no minAvailable)", b.Metadata.Name)
		}
	}

	// The pod: one container, the image's user, named ports.
	if len(pod.Containers) != 1 {
		t.Fatalf("%s", name(fmt.Sprintf("%d containers, want kvnode alone", len(pod.Containers))))
	}
	c := pod.Containers[0]
	sc := pod.SecurityContext
	if !sc.RunAsNonRoot || sc.RunAsUser != img.uid || sc.RunAsGroup != img.gid || sc.FSGroup != img.gid {
		t.Errorf("%s", name(fmt.Sprintf("securityContext %+v: want runAsNonRoot and the image's %d:%d, fsGroup %d (the volume's owner)", sc, img.uid, img.gid, img.gid)))
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation ||
		!c.SecurityContext.ReadOnlyRootFilesystem || !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("%s", name("the container may escalate, write its root file system or keep capabilities"))
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		if p.Name == "" {
			t.Errorf("%s", name(fmt.Sprintf("container port %d has no name", p.ContainerPort)))
		}
		ports[p.Name] = p.ContainerPort
	}
	if want := map[string]int{"http": port(t, img.env["TROUPE_HTTP_ADDR"]), "raft": port(t, img.env["TROUPE_RAFT_ADDR"])}; !maps.Equal(ports, want) {
		t.Errorf("%s", name(fmt.Sprintf("container ports %v, want %v (the image's TROUPE_HTTP_ADDR and TROUPE_RAFT_ADDR)", ports, want)))
	}

	// Probes: liveness on /healthz, readiness on /readyz, by port name.
	for _, p := range []struct {
		what  string
		probe *probe
		path  string
	}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("%s", name(p.what+": want an httpGet probe"))
		case p.probe.HTTPGet.Path != p.path:
			t.Errorf("%s", name(fmt.Sprintf("%s asks %s, want %s", p.what, p.probe.HTTPGet.Path, p.path)))
		case ports[p.probe.HTTPGet.Port] != ports["http"]:
			t.Errorf("%s", name(fmt.Sprintf("%s asks port %q, not the HTTP port", p.what, p.probe.HTTPGet.Port)))
		}
	}

	// Stopping: more time than kvnode takes.
	grace := 30 // Kubernetes' default
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	if shut := deploytest.ShutdownTimeout(t); float64(grace) < shut.Seconds()+10 {
		t.Errorf("%s", name(fmt.Sprintf("terminationGracePeriodSeconds %d leaves too little above kvnode's %s bound on a graceful stop", grace, shut)))
	}
	if spec.PodManagementPolicy != "Parallel" {
		t.Errorf("%s", name("podManagementPolicy must be Parallel: a pod is ready only once a majority runs"))
	}

	// Services: the headless one behind serviceName, ports by name.
	var headless *service
	for i, s := range m.services {
		if !selects(s.Spec.Selector, podLabels) {
			t.Errorf("Service %s: selector %v does not match the pods %v", s.Metadata.Name, s.Spec.Selector, podLabels)
		}
		for _, p := range s.Spec.Ports {
			if p.Name == "" || ports[p.TargetPort] == 0 || p.Port != ports[p.TargetPort] {
				t.Errorf("Service %s: port %q %d -> %q: want a named port onto the container port of that name, same number", s.Metadata.Name, p.Name, p.Port, p.TargetPort)
			}
		}
		if s.Metadata.Name == spec.ServiceName {
			headless = &m.services[i]
		}
	}
	if headless == nil {
		t.Fatalf("%s", name(fmt.Sprintf("serviceName %q names no Service here", spec.ServiceName)))
	}
	if headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: the StatefulSet's Service must be headless (clusterIP: None) and publish not-ready addresses", headless.Metadata.Name)
	}
	if hp := headless.Spec.Ports; len(hp) != 2 {
		t.Errorf("Service %s: want the http and raft ports, got %v", headless.Metadata.Name, hp)
	}

	// Volumes: the data claim on the image's data directory, the config
	// from the ConfigMap here, at the file TROUPE_CONFIG names.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		switch {
		case e.Name == "POD_NAME":
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s", name("POD_NAME must come from metadata.name"))
			}
		case !envNames[e.Name]:
			t.Errorf("%s", name(e.Name+" is not a kvnode setting (docs/configuration.md)"))
		}
	}
	claims := map[string]bool{}
	for _, v := range spec.VolumeClaimTemplates {
		claims[v.Metadata.Name] = true
		if !slices.Equal(v.Spec.AccessModes, []string{"ReadWriteOnce"}) || v.Spec.Resources.Requests["storage"] == "" {
			t.Errorf("%s", name("volumeClaimTemplate "+v.Metadata.Name+": want ReadWriteOnce and a storage request"))
		}
	}
	cms := map[string]configMap{}
	for _, cm := range m.configMaps {
		cms[cm.Metadata.Name] = cm
	}
	volumes := map[string]string{} // volume -> ConfigMap
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil {
			t.Errorf("%s", name("volume "+v.Name+" is not from a ConfigMap"))
			continue
		}
		if _, ok := cms[v.ConfigMap.Name]; !ok {
			t.Errorf("%s", name(fmt.Sprintf("volume %s: ConfigMap %q is not among the manifests", v.Name, v.ConfigMap.Name)))
		}
		volumes[v.Name] = v.ConfigMap.Name
	}
	var conf map[string]any
	for _, vm := range c.VolumeMounts {
		switch {
		case claims[vm.Name]:
			if vm.MountPath != img.env["TROUPE_DATA_DIR"] {
				t.Errorf("%s", name(fmt.Sprintf("volume %s mounted at %s; the image keeps its data in %s", vm.Name, vm.MountPath, img.env["TROUPE_DATA_DIR"])))
			}
		case volumes[vm.Name] != "":
			key, ok := strings.CutPrefix(env["TROUPE_CONFIG"], vm.MountPath+"/")
			data, found := cms[volumes[vm.Name]].Data[key]
			if !ok || !found || !vm.ReadOnly {
				t.Fatalf("%s", name(fmt.Sprintf("TROUPE_CONFIG=%q is not a file of ConfigMap %s (read-only at %s)", env["TROUPE_CONFIG"], volumes[vm.Name], vm.MountPath)))
			}
			if err := yaml.Unmarshal([]byte(data), &conf); err != nil {
				t.Fatalf("ConfigMap %s: %s: %v", volumes[vm.Name], key, err)
			}
		default:
			t.Errorf("%s", name("volumeMount "+vm.Name+" names no volume or claim"))
		}
	}
	if conf == nil {
		t.Fatalf("%s", name("no ConfigMap mounted for TROUPE_CONFIG"))
	}

	// The file: real settings, none that the environment would override
	// (the pods' or the image's), and an initial_cluster that is exactly
	// the pods under their stable names, as each advertises itself.
	for k := range conf {
		e := "TROUPE_" + strings.ToUpper(k)
		switch {
		case !settings[k]:
			t.Errorf("ConfigMap: %s is not a kvnode setting (docs/configuration.md)", k)
		case env[e] != "" || img.env[e] != "":
			t.Errorf("ConfigMap: %s has no effect: %s in the pod's or the image's environment wins over the file", k, e)
		}
	}
	var members []string
	for i := range spec.Replicas {
		pod := fmt.Sprintf("%s-%d", sts.Metadata.Name, i)
		members = append(members, fmt.Sprintf("%s=%s.%s:%d", pod, pod, spec.ServiceName, ports["raft"]))
	}
	if got := fmt.Sprint(conf["initial_cluster"]); got != strings.Join(members, ",") {
		t.Errorf("ConfigMap: initial_cluster %q, want the %d pods %q", got, spec.Replicas, strings.Join(members, ","))
	}
	for e, want := range map[string]string{
		"TROUPE_NODE_ID":        "$(POD_NAME)",
		"TROUPE_ADVERTISE_HTTP": fmt.Sprintf("$(POD_NAME).%s:%d", spec.ServiceName, ports["http"]),
		"TROUPE_ADVERTISE_RAFT": fmt.Sprintf("$(POD_NAME).%s:%d", spec.ServiceName, ports["raft"]),
	} {
		if env[e] != want {
			t.Errorf("%s", name(fmt.Sprintf("%s=%q, want %q", e, env[e], want)))
		}
	}
	if spec.Replicas != 3 {
		t.Errorf("%s", name(fmt.Sprintf("%d replicas, want 3", spec.Replicas)))
	}
}
