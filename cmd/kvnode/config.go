package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/certs"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/server"
)

// kind is how a setting's text is parsed.
type kind int

const (
	kString kind = iota
	kDuration
	kInt
	kFloat
	kBool
)

// setting is one configuration knob. Its YAML key is name, its flag is
// name with dashes, its environment variable TROUPE_<NAME>.
type setting struct {
	name  string
	kind  kind
	def   string
	usage string
}

// settings lists every knob with its default; docs/configuration.md mirrors
// this table.
var settings = []setting{
	{"node_id", kString, "n1", "this node's unique, stable id"},
	{"data_dir", kString, "./data", "directory for the Raft log (wal/), kv.db and snapshots"},
	{"http_addr", kString, "127.0.0.1:8500", "address the HTTP API listens on"},
	{"raft_addr", kString, "127.0.0.1:8300", "address the Raft transport listens on"},
	{"advertise_http", kString, "", "HTTP address other nodes use to reach this one (default: http_addr)"},
	{"advertise_raft", kString, "", "Raft address other nodes use to reach this one (default: raft_addr)"},
	{"initial_cluster", kString, "", "members of a new cluster, id=raft-address,... identical on every node (default: this node alone)"},
	{"initial_cluster_token", kString, "troupe", "goes into the cluster id derived from initial_cluster: give clusters that list the same addresses different tokens"},
	{"join", kString, "", "HTTP addresses of existing members to join through, comma-separated"},
	{"nonvoter", kBool, "false", "with join: join as a non-voting member (replicates, serves reads, counts towards no quorum) until promoted"},
	{"datacenter", kString, "dc1", "datacenter name reported to Consul clients"},
	{"log_level", kString, "info", "debug, info, warn or error"},
	{"log_format", kString, "text", "text or json"},
	{"max_value_size", kInt, "524288", "largest value a PUT accepts, in bytes"},
	{"txn_max_ops", kInt, "128", "most operations one /v1/txn may carry; past it 413"},
	{"session_ttl_min", kDuration, "10s", "shortest session TTL a create accepts (the longest is 24h)"},
	{"session_node_grace", kDuration, "5s", "how long the leader's failure detector must hold a node dead before its sessions (serfHealth) are invalidated"},
	{"tombstone_ttl", kDuration, "15m", "how long a deleted key's tombstone is kept (for blocking queries) before the leader has it reaped; 0 keeps them for ever"},
	{"state_check_interval", kDuration, "5m", "how often every node hashes its whole state at a checkpoint the leader proposes, to compare with the others' (0: off)"},
	{"backup_dir", kString, "", "directory this node writes scheduled snapshots to (empty: none)"},
	{"backup_interval", kDuration, "0s", "how often this node writes a snapshot to backup_dir (0: never)"},
	{"backup_retain", kInt, "24", "how many of this node's snapshots backup_dir keeps; older ones are deleted"},
	{"request_timeout", kDuration, "5s", "how long a request waits for a leader/quorum before answering 503"},
	{"max_in_flight", kInt, "4096", "writes waiting on Raft at once before new ones are refused with 429"},
	{"http_read_header_timeout", kDuration, "10s", "how long a client may take to send a request's headers"},
	{"http_read_timeout", kDuration, "30s", "how long a client may take to send a whole request, body included"},
	{"http_idle_timeout", kDuration, "2m", "how long an idle keep-alive connection stays open"},
	{"http_max_header_bytes", kInt, "65536", "largest request header block accepted, in bytes (431 above)"},
	{"http_max_conns", kInt, "4096", "client connections served at once; past it a new one gets 503"},
	{"http_max_blocking_queries", kInt, "4096", "blocking queries (?index) held at once; past it one gets 429"},
	{"http_rate_limit", kFloat, "0", "requests per second each client (token, else address) may send; past it 429 (0: off)"},
	{"http_rate_burst", kInt, "100", "requests a client may send at once above http_rate_limit"},
	{"max_restarts", kInt, "5", "crashes of one actor tolerated within restart_window before the node exits"},
	{"restart_window", kDuration, "1m", "window for max_restarts"},
	{"timing_profile", kString, "lan", "lan or wan: the defaults for every raft_ and detector_ setting (explicit settings win)"},
	{"raft_heartbeat_timeout", kDuration, "400ms", "follower timeout without leader contact before it campaigns"},
	{"raft_election_timeout", kDuration, "400ms", "candidate timeout before a new election round"},
	{"raft_leader_lease_timeout", kDuration, "400ms", "leader steps down after this long without a quorum"},
	{"raft_commit_timeout", kDuration, "20ms", "idle interval after which the leader pushes the commit index"},
	{"raft_max_append_entries", kInt, "256", "entries per AppendEntries and per FSM batch"},
	{"raft_snapshot_interval", kDuration, "30s", "how often to check whether a snapshot is due"},
	{"raft_snapshot_threshold", kInt, "8192", "log entries since the last snapshot that make one due"},
	{"raft_trailing_logs", kInt, "10240", "log entries kept behind a snapshot for slow followers"},
	{"raft_log_segment_size", kInt, "67108864", "bytes per Raft log segment file; compaction frees whole segments"},
	{"detector_probe_interval", kDuration, "200ms", "how often each peer is pinged by the failure detector"},
	{"detector_probe_timeout", kDuration, "1s", "how long one ping may take before it counts as missed"},
	{"detector_suspect_phi", kFloat, "3", "phi at which a peer becomes suspect"},
	{"detector_dead_phi", kFloat, "8", "phi at which a peer is declared dead"},
	{"detector_min_stddev", kDuration, "100ms", "floor on the deviation of a peer's answer intervals"},
	{"detector_acceptable_pause", kDuration, "500ms", "silence tolerated on top of a peer's usual answer interval"},
	{"tls_ca_file", kString, "", "PEM file of the cluster CA (with tls_cert_file and tls_key_file: TLS on both ports, mutual TLS between nodes)"},
	{"tls_cert_file", kString, "", "PEM file of this node's certificate, naming node_id (kvctl tls cert)"},
	{"tls_key_file", kString, "", "PEM file of this node's private key"},
	{"tls_verify_incoming", kBool, "false", "also require client certificates from the cluster CA on the HTTP API"},
	{"acl_enabled", kBool, "false", "enforce ACL tokens on the HTTP API (default deny; bootstrap with PUT /v1/acl/bootstrap)"},
	{"acl_token", kString, "", "token this node sends when it calls another node's API (a join) while ACLs are on"},
	{"quota_bytes", kInt, "2147483648", "live data kv.db may hold before this node raises the NOSPACE alarm, which refuses writes that grow the state on every node until disarmed (0: no quota)"},
	{"min_free_bytes", kInt, "268435456", "free space the data directory's file system must keep; below it this node raises the NOSPACE alarm (0: not checked)"},
	{"repair_state_file", kBool, "false", "if kv.db is damaged, move it aside and rebuild it from the newest snapshot and the Raft log instead of refusing to start"},
	{"chaos", kBool, "false", "enable fault-injection endpoints; never in production"},
	{"pprof", kBool, "false", "serve Go's profiler at /debug/pprof/ on the HTTP API (for diagnosing performance)"},
	{"unsafe_local_reads", kBool, "false", "UNSAFE, for testing the chaos checker only: answer default reads from local state without asking the leader"},
}

// Config is kvnode's validated configuration: the node's own (see
// server.Config) and how kvnode logs.
type Config struct {
	server.Config
	LogLevel      string
	LogFormat     string
	TimingProfile string
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// errHelp is returned when --help was asked for; usage is already printed.
var errHelp = errors.New("help requested")

// errVersion is returned when --version was asked for: main prints the
// version and exits 0, without reading or checking the configuration.
var errVersion = errors.New("version requested")

// loadConfig applies defaults, then the YAML file, then TROUPE_*
// environment variables, then flags (the last wins), and validates the
// result. Every error names the setting at fault.
func loadConfig(args []string) (*Config, error) {
	fs := pflag.NewFlagSet("kvnode", pflag.ContinueOnError)
	fs.SortFlags = false
	configPath := fs.String("config", "", "YAML configuration file (env TROUPE_CONFIG)")
	showVersion := fs.Bool("version", false, "print the version, commit and Go version, then exit")
	v := viper.New()
	for _, s := range settings {
		if s.kind == kBool {
			fs.Bool(flagName(s.name), s.def == "true", s.usage)
		} else {
			fs.String(flagName(s.name), s.def, s.usage)
		}
		v.SetDefault(s.name, s.def)
		if err := v.BindPFlag(s.name, fs.Lookup(flagName(s.name))); err != nil {
			return nil, err
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: kvnode [flags]\n       kvnode healthcheck [--live] [flags]   (exit 0 when the node answers ready)\n       kvnode recover --members id=raft-address[,...] [flags]\n\nEvery flag also reads from TROUPE_<NAME> and from the YAML key <name> (underscores).\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if *showVersion {
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (settings are flags: --name=value)", fs.Arg(0))
	}
	v.SetEnvPrefix("TROUPE")
	v.AutomaticEnv()

	path := *configPath
	if path == "" {
		path = os.Getenv("TROUPE_CONFIG")
	}
	if path != "" {
		if err := readConfigFile(v, path); err != nil {
			return nil, err
		}
	}
	return build(v)
}

// readConfigFile merges a YAML file into v, refusing keys Troupe does not
// know so a typo does not silently fall back to a default.
func readConfigFile(v *viper.Viper, path string) error {
	file := viper.New()
	file.SetConfigFile(path)
	file.SetConfigType("yaml")
	if err := file.ReadInConfig(); err != nil {
		return fmt.Errorf("config: reading %s: %v", path, err)
	}
	known := map[string]bool{}
	for _, s := range settings {
		known[s.name] = true
	}
	var unknown []string
	for _, k := range file.AllKeys() {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("config: %s: unknown setting %q", path, unknown[0])
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("config: reading %s: %v", path, err)
	}
	return nil
}

// wanProfile holds the defaults timing_profile=wan puts in place: slower
// heartbeats and a more patient failure detector for links with tens to
// hundreds of milliseconds of latency and occasional stalls. Any setting
// given explicitly still wins.
var wanProfile = map[string]string{
	"raft_heartbeat_timeout":    "2s",
	"raft_election_timeout":     "2s",
	"raft_leader_lease_timeout": "1s",
	"raft_commit_timeout":       "50ms",
	"detector_probe_interval":   "1s",
	"detector_probe_timeout":    "3s",
	"detector_min_stddev":       "500ms",
	"detector_acceptable_pause": "3s",
}

// build parses and checks every setting.
func build(v *viper.Viper) (*Config, error) {
	p := parser{v: v}
	profile := strings.ToLower(p.str("timing_profile"))
	switch profile {
	case "lan":
	case "wan":
		for key, val := range wanProfile {
			v.SetDefault(key, val)
		}
	default:
		return nil, fmt.Errorf("config: timing_profile: %q is not lan or wan", profile)
	}
	c := &Config{Config: server.Config{
		NodeID:              p.str("node_id"),
		DataDir:             p.str("data_dir"),
		HTTPAddr:            p.str("http_addr"),
		RaftAddr:            p.str("raft_addr"),
		AdvertiseHTTP:       p.str("advertise_http"),
		AdvertiseRaft:       p.str("advertise_raft"),
		InitialClusterToken: p.str("initial_cluster_token"),
		CheckInitialCluster: strings.TrimSpace(p.str("initial_cluster")) != "",
		Datacenter:          p.str("datacenter"),
		MaxValueSize:        int64(p.positiveInt("max_value_size")),
		LogSegmentSize:      p.intBetween("raft_log_segment_size", minLogSegmentSize, maxLogSegmentSize),
		RequestTimeout:      p.positiveDuration("request_timeout"),
		MaxInFlight:         p.positiveInt("max_in_flight"),
		MaxRestarts:         p.positiveInt("max_restarts"),
		RestartWindow:       p.positiveDuration("restart_window"),
		TLSVerifyIncoming:   p.boolean("tls_verify_incoming"),
		RepairStateFile:     p.boolean("repair_state_file"),
		Chaos:               p.boolean("chaos"),
		Nonvoter:            p.boolean("nonvoter"),
		UnsafeReads:         p.boolean("unsafe_local_reads"),
		Pprof:               p.boolean("pprof"),
		ACLEnabled:          p.boolean("acl_enabled"),
		ACLToken:            p.str("acl_token"),
		MaxBlockingQueries:  p.positiveInt("http_max_blocking_queries"),
		TxnMaxOps:           p.positiveInt("txn_max_ops"),
		SessionTTLMin:       p.positiveDuration("session_ttl_min"),
		SessionNodeGrace:    p.positiveDuration("session_node_grace"),
		TombstoneTTL:        tombstoneTTL(p.nonNegativeDuration("tombstone_ttl")),
		Backups: server.Backups{
			Dir:      p.str("backup_dir"),
			Interval: p.nonNegativeDuration("backup_interval"),
			Retain:   p.positiveInt("backup_retain"),
		},
		StateCheckInterval: p.nonNegativeDuration("state_check_interval"),
		QuotaBytes:         p.nonNegativeInt64("quota_bytes"),
		MinFreeBytes:       p.nonNegativeInt64("min_free_bytes"),
		RateLimit:          p.nonNegativeFloat("http_rate_limit"),
		RateBurst:          p.positiveInt("http_rate_burst"),
		HTTPLimits: actors.HTTPLimits{
			ReadHeaderTimeout: p.positiveDuration("http_read_header_timeout"),
			ReadTimeout:       p.positiveDuration("http_read_timeout"),
			IdleTimeout:       p.positiveDuration("http_idle_timeout"),
			MaxHeaderBytes:    p.positiveInt("http_max_header_bytes"),
			MaxConns:          p.positiveInt("http_max_conns"),
		},
		Timing: cluster.Timing{
			HeartbeatTimeout:   p.positiveDuration("raft_heartbeat_timeout"),
			ElectionTimeout:    p.positiveDuration("raft_election_timeout"),
			LeaderLeaseTimeout: p.positiveDuration("raft_leader_lease_timeout"),
			CommitTimeout:      p.positiveDuration("raft_commit_timeout"),
			MaxAppendEntries:   p.positiveInt("raft_max_append_entries"),
			SnapshotInterval:   p.positiveDuration("raft_snapshot_interval"),
			SnapshotThreshold:  uint64(p.positiveInt("raft_snapshot_threshold")),
			TrailingLogs:       uint64(p.positiveInt("raft_trailing_logs")),
		},
		Detector: cluster.DetectorConfig{
			ProbeInterval:   p.positiveDuration("detector_probe_interval"),
			ProbeTimeout:    p.positiveDuration("detector_probe_timeout"),
			SuspectPhi:      p.positiveFloat("detector_suspect_phi"),
			DeadPhi:         p.positiveFloat("detector_dead_phi"),
			MinStdDev:       p.positiveDuration("detector_min_stddev"),
			AcceptablePause: p.positiveDuration("detector_acceptable_pause"),
			Window:          cluster.DefaultDetector().Window,
			RecoverProbes:   cluster.DefaultDetector().RecoverProbes,
		},
	},
		LogLevel:      strings.ToLower(p.str("log_level")),
		LogFormat:     strings.ToLower(p.str("log_format")),
		TimingProfile: profile,
	}
	if p.err != nil {
		return nil, p.err
	}
	if err := c.validate(p.str("initial_cluster"), p.str("join")); err != nil {
		return nil, err
	}
	if err := c.loadTLS(certs.Files{CA: p.str("tls_ca_file"), Cert: p.str("tls_cert_file"), Key: p.str("tls_key_file")}); err != nil {
		return nil, err
	}
	return c, nil
}

// tombstoneTTL maps the setting to server.Config's: 0 (keep for ever) is
// negative there, where 0 means the default.
func tombstoneTTL(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func (c *Config) validate(initialCluster, join string) error {
	bad := func(key, format string, a ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...))
	}
	if c.NodeID == "" || strings.ContainsAny(c.NodeID, "/=, \t\n") {
		return bad("node_id", "%q must be non-empty and free of '/', '=', ',' and spaces", c.NodeID)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	for _, a := range []struct{ key, val string }{{"http_addr", c.HTTPAddr}, {"raft_addr", c.RaftAddr}} {
		if _, _, err := net.SplitHostPort(a.val); err != nil {
			return bad(a.key, "%q is not host:port (%v)", a.val, err)
		}
	}
	if c.HTTPAddr == c.RaftAddr {
		return bad("raft_addr", "must differ from http_addr (%s)", c.HTTPAddr)
	}
	var err error
	if c.AdvertiseHTTP, err = advertise(c.AdvertiseHTTP, c.HTTPAddr); err != nil {
		return bad("advertise_http", "%v", err)
	}
	if c.AdvertiseRaft, err = advertise(c.AdvertiseRaft, c.RaftAddr); err != nil {
		return bad("advertise_raft", "%v", err)
	}
	for _, j := range splitList(join) {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return bad("join", "%q is not host:port", j)
		}
		c.Join = append(c.Join, j)
	}
	if c.InitialCluster, err = cluster.ParseInitialCluster(initialCluster); err != nil {
		return bad("initial_cluster", "%v", err)
	}
	switch {
	case c.Nonvoter && len(c.Join) == 0:
		return bad("nonvoter", "applies only to a node that joins an existing cluster (join); the members of initial_cluster are voters")
	case len(c.InitialCluster) > 0 && len(c.Join) > 0:
		return bad("join", "set either initial_cluster (a new cluster) or join (an existing one), not both")
	case len(c.InitialCluster) == 0 && len(c.Join) == 0:
		c.InitialCluster = []cluster.Server{{ID: c.NodeID, Addr: c.AdvertiseRaft}}
	case len(c.InitialCluster) > 0:
		i := slices.IndexFunc(c.InitialCluster, func(s cluster.Server) bool { return s.ID == c.NodeID })
		if i < 0 {
			return bad("initial_cluster", "does not list this node (node_id %q)", c.NodeID)
		}
		if c.InitialCluster[i].Addr != c.AdvertiseRaft {
			return bad("initial_cluster", "lists %s=%s but this node advertises Raft at %s", c.NodeID, c.InitialCluster[i].Addr, c.AdvertiseRaft)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		return bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return bad("log_format", "%q is not text or json", c.LogFormat)
	}
	if c.Datacenter == "" {
		return bad("datacenter", "must not be empty")
	}
	t := c.Timing
	// raft's own floors, checked here so the error names our setting.
	for _, floor := range []struct {
		key string
		val time.Duration
		min time.Duration
	}{
		{"raft_heartbeat_timeout", t.HeartbeatTimeout, 5 * time.Millisecond},
		{"raft_election_timeout", t.ElectionTimeout, 5 * time.Millisecond},
		{"raft_leader_lease_timeout", t.LeaderLeaseTimeout, 5 * time.Millisecond},
		{"raft_snapshot_interval", t.SnapshotInterval, 5 * time.Millisecond},
		{"raft_commit_timeout", t.CommitTimeout, time.Millisecond},
	} {
		if floor.val < floor.min {
			return bad(floor.key, "%s is below raft's minimum of %s", floor.val, floor.min)
		}
	}
	switch {
	case t.ElectionTimeout < t.HeartbeatTimeout:
		return bad("raft_election_timeout", "%s must be at least raft_heartbeat_timeout (%s)", t.ElectionTimeout, t.HeartbeatTimeout)
	case t.LeaderLeaseTimeout > t.HeartbeatTimeout:
		return bad("raft_leader_lease_timeout", "%s must not exceed raft_heartbeat_timeout (%s)", t.LeaderLeaseTimeout, t.HeartbeatTimeout)
	case t.MaxAppendEntries > 1024:
		return bad("raft_max_append_entries", "%d is above raft's limit of 1024", t.MaxAppendEntries)
	}
	if err := cluster.ValidateTiming(t); err != nil {
		return bad("raft timing", "%v", err)
	}
	d := c.Detector
	switch {
	case d.DeadPhi <= d.SuspectPhi:
		return bad("detector_dead_phi", "%v must be above detector_suspect_phi (%v)", d.DeadPhi, d.SuspectPhi)
	case d.ProbeTimeout < d.ProbeInterval:
		return bad("detector_probe_timeout", "%s must be at least detector_probe_interval (%s)", d.ProbeTimeout, d.ProbeInterval)
	case d.ProbeInterval < 10*time.Millisecond:
		return bad("detector_probe_interval", "%s is below the 10ms floor", d.ProbeInterval)
	}
	return nil
}

// advertise defaults an advertise address to the bind address, which only
// works when the bind address names a concrete host.
func advertise(adv, bind string) (string, error) {
	if adv == "" {
		host, _, _ := net.SplitHostPort(bind)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return "", fmt.Errorf("required when %s binds all interfaces", bind)
		}
		return bind, nil
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port (%v)", adv, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() || port == "0" {
		return "", fmt.Errorf("%q is not an address other nodes can reach", adv)
	}
	return adv, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parser reads typed settings and keeps the first error, which names the
// setting.
type parser struct {
	v   *viper.Viper
	err error
}

// str reads a setting as text. A YAML list (join, initial_cluster) is
// accepted as its items joined by commas rather than silently read as "".
func (p *parser) str(key string) string {
	if list, ok := p.v.Get(key).([]any); ok {
		items := make([]string, len(list))
		for i, item := range list {
			items[i] = strings.TrimSpace(fmt.Sprint(item))
		}
		return strings.Join(items, ",")
	}
	return strings.TrimSpace(p.v.GetString(key))
}

func (p *parser) fail(key, format string, a ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...))
	}
}

func (p *parser) positiveDuration(key string) time.Duration {
	s := p.str(key)
	d, err := time.ParseDuration(s)
	if err != nil {
		p.fail(key, "%q is not a duration like 500ms or 5s", s)
		return 0
	}
	if d <= 0 {
		p.fail(key, "%s must be positive", s)
	}
	return d
}

// nonNegativeDuration is a duration where 0 turns something off.
func (p *parser) nonNegativeDuration(key string) time.Duration {
	s := p.str(key)
	if d, err := time.ParseDuration(s); err == nil && d == 0 {
		return 0
	}
	return p.positiveDuration(key)
}

// Bounds of raft_log_segment_size: raft-wal stores the limit in 32 bits, and
// segments much smaller than a batch of entries would rotate constantly.
const (
	minLogSegmentSize = 64 << 10
	maxLogSegmentSize = 1 << 30
)

func (p *parser) intBetween(key string, lo, hi int) int {
	n := p.positiveInt(key)
	if n > 0 && (n < lo || n > hi) {
		p.fail(key, "%d must be between %d and %d", n, lo, hi)
	}
	return n
}

func (p *parser) positiveInt(key string) int {
	s := p.str(key)
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail(key, "%q is not a whole number", s)
		return 0
	}
	if n <= 0 {
		p.fail(key, "%d must be positive", n)
	}
	return n
}

// nonNegativeInt64 is a byte count where 0 turns something off.
func (p *parser) nonNegativeInt64(key string) int64 {
	s := p.str(key)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		p.fail(key, "%q is not a whole number of bytes", s)
		return 0
	}
	if n < 0 {
		p.fail(key, "%d must not be negative", n)
	}
	return n
}

func (p *parser) positiveFloat(key string) float64 {
	f := p.float(key)
	if f <= 0 {
		p.fail(key, "%s must be positive", p.str(key))
	}
	return f
}

func (p *parser) nonNegativeFloat(key string) float64 {
	f := p.float(key)
	if f < 0 {
		p.fail(key, "%s must not be negative", p.str(key))
	}
	return f
}

func (p *parser) float(key string) float64 {
	s := p.str(key)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != f || math.IsInf(f, 0) {
		p.fail(key, "%q is not a number", s)
		return 0
	}
	return f
}

func (p *parser) boolean(key string) bool {
	s := p.str(key)
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.fail(key, "%q is not true or false", s)
	}
	return b
}

// loadTLS reads the certificate files, if any are set: all three or none.
func (c *Config) loadTLS(f certs.Files) error {
	set := 0
	for _, name := range []string{f.CA, f.Cert, f.Key} {
		if name != "" {
			set++
		}
	}
	switch {
	case set == 0:
		if c.TLSVerifyIncoming {
			return errors.New("config: tls_verify_incoming: needs tls_ca_file, tls_cert_file and tls_key_file")
		}
		return nil
	case set < 3:
		return errors.New("config: tls_ca_file, tls_cert_file and tls_key_file go together: set all three (TLS on) or none (TLS off)")
	}
	r, err := certs.Load(f)
	if err != nil {
		return fmt.Errorf("config: tls: %w", err)
	}
	if id := r.NodeID(); id != c.NodeID {
		return fmt.Errorf("config: tls_cert_file: %s names node %q, but node_id is %q (make one with: kvctl tls cert --node %s)", f.Cert, id, c.NodeID, c.NodeID)
	}
	c.TLS = r
	return nil
}
