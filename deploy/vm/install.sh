#!/usr/bin/env bash
# Installs (or upgrades) Troupe's kvnode on one VM under systemd, from an
# unpacked release tarball: run it from the tarball's directory, as root.
# docs/operations.md ("VMs: install, systemd, upgrade") is the guide.
#
#   First install, node n1 of three (the same --initial-cluster on each):
#     ./install.sh --node-id n1 --advertise 10.0.0.1 \
#         --initial-cluster n1=10.0.0.1:8300,n2=10.0.0.2:8300,n3=10.0.0.3:8300
#   Or with a config file of your own (see the examples in deploy/vm/):
#     ./install.sh --config n1.yaml [--env-file kvnode.env]
#   Upgrade, one VM at a time, from the new release's directory:
#     ./install.sh --upgrade
#
# What it does, each step only if not already done (running it again
# changes nothing):
#   - a system user and group `troupe` (no login, no home of its own);
#   - /var/lib/troupe (0700, troupe), /etc/troupe (0750, root:troupe);
#   - /etc/troupe/kvnode.yaml (0640) from the flags or --config, and
#     /etc/troupe/kvnode.env from --env-file; an existing file is never
#     overwritten, and one that differs from what was asked is an error;
#   - kvnode and kvctl in /usr/local/bin;
#   - kvnode.service in /etc/systemd/system, enabled and started.
# A different kvnode already installed is left alone: that is --upgrade.
#
# --upgrade replaces the binaries and the unit file and restarts the node,
# safely: first it waits until this node is ready and sees every other
# member alive (so taking it down leaves a quorum; --force skips this),
# then restarts it (on SIGTERM a leader hands leadership over before it
# stops), and returns only once the new kvnode runs, is ready (a leader is
# known and this node has caught up) and again sees every member alive.
# The configuration and the data are kept.
set -euo pipefail

PROG=install.sh
BIN_DIR=/usr/local/bin
ETC_DIR=/etc/troupe
DATA_DIR=/var/lib/troupe
UNIT=kvnode.service
UNIT_PATH=/etc/systemd/system/$UNIT
CONFIG=$ETC_DIR/kvnode.yaml
ENV_FILE=$ETC_DIR/kvnode.env
USER_NAME=troupe

usage() {
  cat <<'EOF'
Usage: install.sh [options]

First install (a new config file from flags):
  --node-id ID              this node's id (node_id)
  --advertise HOST          the address (IP or DNS name) other nodes and
                            clients reach this VM at
  --initial-cluster LIST    id=host:8300,... identical on every node of a
                            new cluster (or:)
  --join ADDRS              HTTP addresses (host:8500,...) of members of a
                            running cluster to join
  --nonvoter                with --join: join as a non-voting member, to be
                            promoted once caught up (kvctl members promote)
First install (your own files):
  --config FILE             install FILE as /etc/troupe/kvnode.yaml
  --env-file FILE           install FILE as /etc/troupe/kvnode.env
                            (TROUPE_* variables, e.g. TROUPE_ACL_TOKEN)
Either:
  --no-start                install and enable, but do not start
  --wait                    after starting, wait until the node is ready
                            (needs a quorum of the cluster running)
Upgrade:
  --upgrade                 replace kvnode, kvctl and the unit, restart safely
  --force                   upgrade even if the cluster is not healthy
Both:
  --from DIR                where kvnode, kvctl and kvnode.service are
                            (default: this script's directory)
  --timeout SECONDS         how long to wait for readiness (default 120)
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*"; }

node_id= advertise= initial_cluster= join= config_src= env_src= nonvoter=
upgrade=0 force=0 start=1 wait_ready=0 timeout=120 last_answer=
from=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
  case $1 in
    --node-id) node_id=${2:?--node-id needs a value}; shift ;;
    --advertise) advertise=${2:?--advertise needs a value}; shift ;;
    --initial-cluster) initial_cluster=${2:?--initial-cluster needs a value}; shift ;;
    --join) join=${2:?--join needs a value}; shift ;;
    --nonvoter) nonvoter=1 ;;
    --config) config_src=${2:?--config needs a file}; shift ;;
    --env-file) env_src=${2:?--env-file needs a file}; shift ;;
    --upgrade) upgrade=1 ;;
    --force) force=1 ;;
    --no-start) start=0 ;;
    --wait) wait_ready=1 ;;
    --from) from=${2:?--from needs a directory}; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[ "$(id -u)" = 0 ] || die "run as root (it creates a user, writes /etc and /usr/local/bin, and drives systemd)"
[ -d /run/systemd/system ] || die "systemd is not running here (no /run/systemd/system)"
for f in kvnode kvctl "$UNIT"; do
  [ -f "$from/$f" ] || die "$from/$f is missing: run install.sh from the unpacked release tarball, or give --from"
done
case $timeout in ''|*[!0-9]*) die "--timeout wants whole seconds, not '$timeout'" ;; esac
new_version=$("$from/kvnode" --version) || die "$from/kvnode --version failed: is it this machine's architecture?"

# healthcheck runs kvnode's own probe with the node's settings: the config
# file and the variables of the environment file, as the unit gives them.
healthcheck() {
  (
    if [ -r "$ENV_FILE" ]; then set -a; . "$ENV_FILE"; set +a; fi
    "$BIN_DIR/kvnode" healthcheck --config "$CONFIG" "$@"
  )
}

# wait_for ARGS: until `kvnode healthcheck ARGS` passes (0), or the
# timeout (1, with the last answer and the journal's tail); a unit that
# failed ends the script.
wait_for() {
  local deadline=$((SECONDS + timeout)) out state
  while :; do
    if out=$(healthcheck "$@" 2>&1); then
      say "$out"
      last_answer=$out
      return 0
    fi
    case $out in
      *"give the node an acl_token"*)
        echo "$PROG: $out" >&2
        die "ACLs are on: put the node's management token in $ENV_FILE (TROUPE_ACL_TOKEN=..., mode 0640, root:$USER_NAME) and run this again" ;;
    esac
    state=$(systemctl is-active "$UNIT" || true)
    if [ "$state" = failed ]; then
      journalctl -u "$UNIT" -n 30 --no-pager >&2 || true
      die "kvnode failed (the journal's tail is above; systemctl status kvnode)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      journalctl -u "$UNIT" -n 30 --no-pager >&2 || true
      echo "$PROG: not within ${timeout}s: $out" >&2
      return 1
    fi
    sleep 1
  done
}

# put SRC DST MODE OWNER: install a file atomically (a running kvnode
# keeps its old binary's inode); says whether it changed.
put() {
  local src=$1 dst=$2 mode=$3 owner=$4
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    chmod "$mode" "$dst"; chown "$owner" "$dst"
    return 1
  fi
  install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$src" "$dst.new.$$"
  mv -f "$dst.new.$$" "$dst"
  return 0
}

# keep_or_put SRC DST: a configuration file is written once; asking for a
# different one later is an error, never a silent overwrite.
keep_or_put() {
  local src=$1 dst=$2
  if [ -f "$dst" ]; then
    if ! cmp -s "$src" "$dst"; then
      diff -u "$dst" "$src" >&2 || true
      die "$dst exists and differs from what was asked (diff above): edit it by hand, or remove it to write it anew"
    fi
    return 0
  fi
  put "$src" "$dst" 0640 root:"$USER_NAME" || true
  say "wrote $dst"
}

install_binaries() {
  local b changed=1
  for b in kvnode kvctl; do
    if put "$from/$b" "$BIN_DIR/$b" 0755 root:root; then
      say "installed $BIN_DIR/$b"
      changed=0
    fi
  done
  return $changed
}

install_unit() {
  if put "$from/$UNIT" "$UNIT_PATH" 0644 root:root; then
    say "installed $UNIT_PATH"
    systemctl daemon-reload
    return 0
  fi
  return 1
}


if [ "$upgrade" = 1 ]; then
  if [ -n "$node_id$advertise$initial_cluster$join$nonvoter$config_src$env_src" ]; then
    die "--upgrade keeps the configuration: edit $CONFIG by hand instead of passing settings"
  fi
  for f in "$BIN_DIR/kvnode" "$UNIT_PATH" "$CONFIG"; do
    [ -f "$f" ] || die "$f is missing: nothing to upgrade (install first, without --upgrade)"
  done
  old_version=$("$BIN_DIR/kvnode" --version)
  say "upgrading: $old_version -> $new_version"
  active=$(systemctl is-active "$UNIT" || true)
  if [ "$active" = active ] && cmp -s "$from/kvnode" "$BIN_DIR/kvnode" &&
    cmp -s "$from/kvctl" "$BIN_DIR/kvctl" && cmp -s "$from/$UNIT" "$UNIT_PATH"; then
    say "already at $new_version with this unit, and running: nothing to do"
    exit 0
  fi
  if [ "$active" = active ] && [ "$force" = 0 ]; then
    say "waiting until this node is ready and sees every other member alive, so that restarting it leaves a quorum"
    wait_for --cluster || die "the cluster is not healthy, so restarting this node could cost it its quorum; nothing was changed. Fix the cluster first, or pass --force"
  elif [ "$active" != active ]; then
    say "kvnode is $active here: nothing to wait for before replacing it"
  fi
  install_binaries || true
  install_unit || true
  [ "$active" = active ] || [ "$start" = 1 ] || { say "installed; not started (--no-start)"; exit 0; }
  restart_start=$SECONDS
  say "restarting kvnode (a leader hands leadership over first)"
  systemctl restart "$UNIT" || { journalctl -u "$UNIT" -n 30 --no-pager >&2 || true; die "systemctl restart kvnode failed"; }
  wait_for --cluster || die "the upgraded node did not become ready with every peer alive (above); the cluster may still be catching up: check before you upgrade the next VM"
  # healthcheck --cluster ends with "runs <version>": the node's own word.
  want=$(set -- $new_version; echo "$2")
  case $last_answer in
    *"runs $want") ;;
    *) die "the node answers '$last_answer', not version $want: is another kvnode serving this port?" ;;
  esac
  say "upgraded to $new_version; this node was back and ready $((SECONDS - restart_start))s after the restart began"
  exit 0
fi

# First install, or the same again.
if [ -f "$BIN_DIR/kvnode" ] && ! cmp -s "$from/kvnode" "$BIN_DIR/kvnode"; then
  die "$($BIN_DIR/kvnode --version) is installed already; to replace it with $new_version run: $0 --upgrade"
fi
if [ -n "$config_src" ] && [ -n "$node_id$advertise$initial_cluster$join$nonvoter" ]; then
  die "give either --config or --node-id/--advertise/--initial-cluster/--join, not both"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "$node_id" ]; then
  [ -n "$advertise" ] || die "--node-id needs --advertise (where the other nodes reach this VM)"
  if [ -z "$initial_cluster$join" ] || { [ -n "$initial_cluster" ] && [ -n "$join" ]; }; then
    die "give one of --initial-cluster (a new cluster) or --join (a running one)"
  fi
  if [ -n "$nonvoter" ] && [ -z "$join" ]; then
    die "--nonvoter needs --join: the members of --initial-cluster are voters"
  fi
  {
    echo "# kvnode on this VM, written by install.sh. Every setting is in"
    echo "# docs/configuration.md; TROUPE_* variables in $ENV_FILE win over it."
    echo "node_id: $node_id"
    echo "data_dir: $DATA_DIR"
    echo "http_addr: 0.0.0.0:8500"
    echo "advertise_http: $advertise:8500"
    echo "raft_addr: 0.0.0.0:8300"
    echo "advertise_raft: $advertise:8300"
    if [ -n "$initial_cluster" ]; then echo "initial_cluster: $initial_cluster"; fi
    if [ -n "$join" ]; then echo "join: $join"; fi
    if [ -n "$nonvoter" ]; then echo "nonvoter: true"; fi
    echo "log_format: json"
  } >"$tmp/kvnode.yaml"
  config_src=$tmp/kvnode.yaml
elif [ -z "$config_src" ] && [ ! -f "$CONFIG" ]; then
  die "no $CONFIG yet: give --node-id, --advertise and --initial-cluster (or --join), or --config FILE"
fi
if [ -n "$config_src" ]; then [ -f "$config_src" ] || die "$config_src: no such file"; fi
if [ -n "$env_src" ]; then [ -f "$env_src" ] || die "$env_src: no such file"; fi

if ! getent group "$USER_NAME" >/dev/null; then
  groupadd --system "$USER_NAME"
fi
if ! getent passwd "$USER_NAME" >/dev/null; then
  useradd --system --gid "$USER_NAME" --home-dir "$DATA_DIR" --no-create-home \
    --shell /usr/sbin/nologin --comment "Troupe kvnode" "$USER_NAME"
  say "created system user $USER_NAME"
fi
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$DATA_DIR"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC_DIR"
if [ -n "$config_src" ]; then keep_or_put "$config_src" "$CONFIG"; fi
if [ -n "$env_src" ]; then keep_or_put "$env_src" "$ENV_FILE"; fi
install_binaries || true
unit_changed=0
install_unit && unit_changed=1
systemctl enable --quiet "$UNIT"

if [ "$start" = 0 ]; then
  say "installed and enabled; start it with: systemctl start kvnode"
  exit 0
fi
case $(systemctl is-active "$UNIT" || true) in
  active)
    if [ "$unit_changed" = 1 ]; then
      say "the unit file changed but kvnode runs: restart it when it suits (install.sh --upgrade waits for the cluster first)"
    else
      say "kvnode is running already ($new_version)"
    fi
    ;;
  *)
    # Type=notify: this returns once kvnode serves, not when the cluster
    # has a leader (the other nodes may not be installed yet).
    systemctl start "$UNIT" || { journalctl -u "$UNIT" -n 30 --no-pager >&2 || true; die "systemctl start kvnode failed"; }
    say "started kvnode ($new_version)"
    ;;
esac
if [ "$wait_ready" = 1 ]; then
  wait_for || die "kvnode runs but is not ready: a new cluster needs a majority of its nodes started"
fi
