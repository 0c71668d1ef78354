package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// InjectConfig is one fault injected by hand into a running cluster, to
// watch it happen: troupe-chaos inject, and the scripts over it.
type InjectConfig struct {
	// Nemesis is the fault, by name (see Nemeses): kill-leader,
	// pause-leader, partition-leader, ...
	Nemesis string
	// Hold is how long the fault lasts, from the moment it is injected,
	// before it is healed; 0 holds it until ctx ends.
	Hold time.Duration
	// Keep leaves the fault in place: a killed node stays down.
	Keep bool
	// LeaderWait bounds the watch for a new leader after a fault that
	// hits the leader (default 15 s, and never past Hold).
	LeaderWait time.Duration
	// Logf hears every step (nil: silence).
	Logf func(string, ...any)
}

// InjectResult is what one injected fault did.
type InjectResult struct {
	Detail    string // what the nemesis did, e.g. "kill -9 n1"
	OldLeader string // the leader before the fault ("" if none was known)
	// NewLeader is the first leader other than OldLeader that a node
	// named after the fault, and Election how long after the fault.
	NewLeader string
	Election  time.Duration
	// Leader is who leads once the fault is healed ("" if unknown or
	// the fault was kept).
	Leader string
}

// ErrNoLeader is returned by Inject when a fault aimed at the leader
// finds none: nothing was done.
var ErrNoLeader = errors.New("no leader to act on")

// Inject applies one nemesis to target, reports the new leader when the
// fault hit the leader, holds the fault and heals it (restart, resume,
// clear the rules) unless told to keep it. When ctx ends (Ctrl-C) during
// the hold, the fault is healed at once; the heal itself is not cut short.
func Inject(ctx context.Context, cfg InjectConfig, target Target) (*InjectResult, error) {
	mk, ok := Nemeses[cfg.Nemesis]
	if !ok {
		return nil, fmt.Errorf("unknown nemesis %q (known: %s)", cfg.Nemesis, strings.Join(NemesisNames(), ", "))
	}
	if cfg.LeaderWait <= 0 {
		cfg.LeaderWait = 15 * time.Second
	}
	if cfg.Hold > 0 && cfg.Hold < cfg.LeaderWait {
		cfg.LeaderWait = cfg.Hold
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	env := &Env{
		Target: target,
		Rand:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed)),
		HTTP:   &http.Client{Timeout: 10 * time.Second},
		Logf:   logf,
	}
	res := &InjectResult{}
	leader, silent := leaderNow(ctx, env, "")
	atLeader := strings.HasSuffix(cfg.Nemesis, "-leader")
	switch {
	case len(silent) == len(target.Nodes()):
		return res, fmt.Errorf("no member answered (%s)", strings.Join(silent, ", "))
	case leader != "":
		res.OldLeader = leader
		logf("leader is %s", describe(target, leader))
	case atLeader:
		return res, ErrNoLeader
	}

	nem := mk()
	mark := time.Now()
	detail, err := nem.Start(ctx, env)
	res.Detail = detail
	if err != nil {
		if herr := nem.Stop(context.WithoutCancel(ctx), env); herr != nil {
			err = errors.Join(err, fmt.Errorf("undoing it: %w", herr))
		}
		return res, fmt.Errorf("%s: %w", cfg.Nemesis, err)
	}
	logf("fault: %s", detail)
	if atLeader {
		res.NewLeader, res.Election = watchNewLeader(ctx, env, res.OldLeader, mark, cfg.LeaderWait)
		if res.NewLeader != "" {
			logf("new leader: %s, %d ms after the fault", describe(target, res.NewLeader), res.Election.Milliseconds())
		} else {
			logf("no new leader within %s", cfg.LeaderWait)
		}
	}
	if cfg.Keep {
		logf("the fault stays in place")
		return res, nil
	}
	if cfg.Hold == 0 {
		logf("holding the fault until interrupted")
		<-ctx.Done()
	} else if left := cfg.Hold - time.Since(mark); left > 0 {
		logf("holding the fault for %s more", left.Round(100*time.Millisecond))
		sleep(ctx, left)
	}
	if ctx.Err() != nil {
		logf("interrupted: healing now")
	}
	heal, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := nem.Stop(heal, env); err != nil {
		return res, fmt.Errorf("healing %s: %w", detail, err)
	}
	logf("healed after %s", time.Since(mark).Round(100*time.Millisecond))
	res.Leader = awaitAll(heal, env, 30*time.Second)
	if res.Leader != "" {
		logf("leader now: %s", describe(target, res.Leader))
	}
	return res, nil
}

// leaderNow asks every member but skip who leads: the first leader named,
// and the members that did not answer.
func leaderNow(ctx context.Context, env *Env, skip string) (leader string, silent []string) {
	for _, n := range env.Target.Nodes() {
		var st struct {
			LeaderID string `json:"leader_id"`
		}
		switch {
		case n.ID == skip:
		case env.getJSON(ctx, n.HTTPAddr, "/v1/cluster/status", &st) != nil:
			silent = append(silent, n.ID)
		case leader == "":
			leader = st.LeaderID
		}
	}
	return leader, silent
}

// watchNewLeader asks the members other than old until one names another
// leader: old may be frozen, and a question to it would wait out the
// whole timeout.
func watchNewLeader(ctx context.Context, env *Env, old string, mark time.Time, limit time.Duration) (string, time.Duration) {
	ctx, cancel := context.WithDeadline(ctx, mark.Add(limit))
	defer cancel()
	for {
		if l, _ := leaderNow(ctx, env, old); l != "" && l != old {
			return l, time.Since(mark)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return "", 0
		}
	}
}

// awaitAll waits until every member answers (a restarted node is back)
// and one names a leader, and returns it; members still silent at the
// limit are logged.
func awaitAll(ctx context.Context, env *Env, limit time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		leader, silent := leaderNow(ctx, env, "")
		if len(silent) == 0 && leader != "" {
			return leader
		}
		if !sleep(ctx, 200*time.Millisecond) {
			env.Logf("%s after the heal: %s still silent, leader %q (see the node logs)", limit, strings.Join(silent, ", "), leader)
			return leader
		}
	}
}

// describe names a member with its addresses, for the log.
func describe(t Target, id string) string {
	for _, n := range t.Nodes() {
		if n.ID == id {
			if n.RaftAddr != "" {
				return fmt.Sprintf("%s (http %s, raft %s)", id, n.HTTPAddr, n.RaftAddr)
			}
			return fmt.Sprintf("%s (http %s)", id, n.HTTPAddr)
		}
	}
	return id
}
