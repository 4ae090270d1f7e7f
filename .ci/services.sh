#!/usr/bin/env bash
# Test services for mlenv: a Docker Engine, a base image built with
# debootstrap (Docker Hub is not reachable), and a local OCI registry
# (Debian's docker-registry, i.e. CNCF distribution) on 127.0.0.1.
#
#   bash .ci/services.sh up       # install/start what is missing, write the env file
#   bash .ci/services.sh down     # stop only what `up` started
#   bash .ci/services.sh env      # print the env file (source-able exports)
#   bash .ci/services.sh status   # exit 0 if the daemon and registry are up
#
# State lives in .ci/_work/ (gitignored): pid files, logs, registry config and
# storage, services.env. The debootstrap rootfs tarball is cached in
# /var/cache/mlenv-ci/ so that a second run on the same machine skips it; the
# imported image stays in the daemon's /var/lib/docker. Registry storage is kept
# across down/up (MLENV_CI_FRESH_REGISTRY=1 on `up` wipes it first).
#
# `up` is idempotent: a daemon that already answers is reused and never
# stopped by `down` (only a dockerd that `up` started, recorded in
# .ci/_work/dockerd.pid, is); same for the registry.
#
# Network rules: dockerd runs with --bridge=none --iptables=false (no docker0,
# no NAT); builds use host networking, containers run with --network none; the
# registry listens on 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.ci/_work"
ENV_FILE="$WORK/services.env"
CACHE_DIR="${MLENV_CI_CACHE:-/var/cache/mlenv-ci}"

BASE_IMAGE="mlenv-test/debian-python:bookworm"
BASE_REPO="mlenv-test/debian-python"
BASE_TAG="bookworm"
SUITE="bookworm"
DEBOOTSTRAP_INCLUDE="python3,python3-venv,python3-pip,ca-certificates"
# Cache key: change it when the rootfs recipe changes.
ROOTFS_TAR="$CACHE_DIR/debian-$SUITE-minbase-python3-v1.tar"

DOCKERD_PID="$WORK/dockerd.pid"
DOCKERD_LOG="$WORK/dockerd.log"
REG_DIR="$WORK/registry"
REG_PID="$REG_DIR/registry.pid"
REG_PORT_FILE="$REG_DIR/port"
REG_CONFIG="$REG_DIR/config.yml"
REG_LOG="$REG_DIR/registry.log"
REG_DATA="$REG_DIR/data"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# step NAME FUNCTION...: run a step and print how long it took.
step() {
    local name="$1" t0
    shift
    t0="$(now)"
    log "-> $name"
    "$@"
    log "<- $name: $(elapsed "$t0")"
}

# pid_alive PID [COMM]: the process exists, is not a zombie and (if given)
# its command name is COMM, so a stale pid file never matches a reused pid.
pid_alive() {
    local pid="${1:-}" comm="${2:-}" stat
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ] || return 1
    [ -z "$comm" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
read_pid() { cat "$1" 2>/dev/null || true; }

docker_ok() { docker info >/dev/null 2>&1; }

# Start a long-running program detached from this shell (own session, stdin
# from /dev/null, output to a log), recording its pid in PIDFILE.
spawn() {
    local pidfile="$1" logfile="$2"
    shift 2
    rm -f "$pidfile"
    setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    # Wait until the pid is recorded and the shell has exec'd the program (so
    # that pid_alive PID COMM matches from now on).
    local i pid comm
    comm="$(basename "$1" | cut -c1-15)"
    for i in $(seq 1 100); do
        pid="$(read_pid "$pidfile")"
        if [ -n "$pid" ]; then
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] && return 0
            kill -0 "$pid" 2>/dev/null || return 0 # died at once: the caller reports it
        fi
        sleep 0.05
    done
    die "could not start $1"
}

# stop_pid PIDFILE COMM TIMEOUT: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pidfile="$1" name="$2" timeout="$3" pid i
    pid="$(read_pid "$pidfile")"
    if ! pid_alive "$pid" "$name"; then
        [ -e "$pidfile" ] && log "$name (pid ${pid:-?}) is not running"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $((timeout * 10))); do
        pid_alive "$pid" "$name" || break
        sleep 0.1
    done
    if pid_alive "$pid" "$name"; then
        log "$name did not stop in ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
}

# ---------------------------------------------------------------- packages --

ensure_packages() {
    local need=() cmd pkg
    # command -> Debian package
    for pair in docker:docker.io dockerd:docker.io docker-registry:docker-registry \
        debootstrap:debootstrap curl:curl setsid:util-linux gpgv:gpgv \
        chromium:chromium chromedriver:chromium-driver; do
        cmd="${pair%%:*}"
        pkg="${pair#*:}"
        command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -eq 0 ]; then
        log "all packages present"
        return 0
    fi
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    log "installing: ${need[*]}"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need[*]}"
    # Keep the packages' maintainer scripts from starting services: docker.io's
    # init script would start dockerd with the default bridge (docker0 on a
    # private range), which this project must never create.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    # Same install as on the developer machines (with Recommends: apparmor,
    # cgroupfs-mount, xz-utils, ...); needrestart must not restart anything.
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get install -y -q "${need[@]}"
    } >"$WORK/apt.log" 2>&1 || rc=$?
    [ "$created_policy" = 1 ] && rm -f "$policy"
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$WORK/apt.log" >&2
        die "apt-get install failed (log: $WORK/apt.log)"
    fi
}

# ------------------------------------------------------------------ dockerd --

ensure_dockerd() {
    if docker_ok; then
        local pid
        pid="$(read_pid "$DOCKERD_PID")"
        if pid_alive "$pid" dockerd; then
            log "dockerd already running (started by us earlier, pid $pid)"
        else
            rm -f "$DOCKERD_PID"
            log "a Docker daemon already answers (not started by us; left alone)"
        fi
        return 0
    fi
    if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix://}" = "$DOCKER_HOST" ]; then
        die "DOCKER_HOST=$DOCKER_HOST does not answer and is not a local socket"
    fi
    local old i
    old="$(read_pid "$DOCKERD_PID")"
    if pid_alive "$old" dockerd; then
        # Ours, but not answering: still starting, or shutting down.
        for i in $(seq 1 150); do
            docker_ok && { log "dockerd (pid $old) answers now"; return 0; }
            pid_alive "$old" dockerd || break
            sleep 0.2
        done
        pid_alive "$old" dockerd && die "dockerd pid $old is alive but 'docker info' fails; see $DOCKERD_LOG"
    fi
    rm -f "$DOCKERD_PID"
    clear_stale_pidfile /var/run/docker.pid dockerd
    clear_stale_pidfile /var/run/docker/containerd/containerd.pid containerd
    log "starting dockerd --bridge=none --iptables=false (log: $DOCKERD_LOG)"
    local args=(--bridge=none --iptables=false)
    if [ -n "${DOCKER_HOST:-}" ]; then
        args+=(--host "$DOCKER_HOST")
    fi
    : >"$DOCKERD_LOG"
    spawn "$DOCKERD_PID" "$DOCKERD_LOG" dockerd "${args[@]}"
    local pid i
    pid="$(read_pid "$DOCKERD_PID")"
    for i in $(seq 1 600); do
        docker_ok && break
        if ! pid_alive "$pid" dockerd; then
            tail -n 30 "$DOCKERD_LOG" >&2
            rm -f "$DOCKERD_PID"
            die "dockerd exited during startup (log: $DOCKERD_LOG)"
        fi
        sleep 0.1
    done
    docker_ok || {
        tail -n 30 "$DOCKERD_LOG" >&2
        die "dockerd did not answer within 60s (log: $DOCKERD_LOG)"
    }
    log "dockerd up (pid $pid, server $(docker version --format '{{.Server.Version}}' 2>/dev/null))"
}

# A dockerd that was killed (e.g. at the end of a session) leaves its pid
# files behind; dockerd refuses to start while the pid in /var/run/docker.pid
# exists, even as a zombie not yet reaped. Remove such files when no live
# process of that name owns them (waiting a little for zombies to be reaped).
clear_stale_pidfile() {
    local file="$1" comm="$2" pid i
    [ -f "$file" ] || return 0
    pid="$(read_pid "$file")"
    if pid_alive "$pid" "$comm"; then
        die "$comm (pid $pid, from $file) runs but 'docker info' fails; stop it or fix DOCKER_HOST"
    fi
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    log "removing stale $file (pid ${pid:-?} is gone)"
    rm -f "$file"
}

# --------------------------------------------------------------- base image --

build_rootfs_tar() {
    if [ -s "$ROOTFS_TAR" ]; then
        log "cached rootfs: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
        return 0
    fi
    mkdir -p "$CACHE_DIR"
    local tmp rootfs rc=0
    tmp="$(mktemp -d "$CACHE_DIR/build.XXXXXX")"
    rootfs="$tmp/rootfs"
    log "debootstrap --variant=minbase --include=$DEBOOTSTRAP_INCLUDE $SUITE (Debian's default mirror; log: $tmp/debootstrap.log)"
    local t0
    t0="$(now)"
    debootstrap --variant=minbase --include="$DEBOOTSTRAP_INCLUDE" "$SUITE" "$rootfs" \
        >"$tmp/debootstrap.log" 2>&1 || rc=$?
    log "debootstrap finished in $(elapsed "$t0") (exit $rc)"
    # debootstrap unmounts proc/sys itself; make sure nothing stays mounted.
    local m
    for m in $(awk -v r="$rootfs" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$tmp/debootstrap.log" >&2
        [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
        rm -rf "$tmp"
        die "debootstrap failed"
    fi
    # Slim it down like an official image: no package cache, no apt lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    # The image's CA bundle is Debian's own (built by update-ca-certificates
    # from the ca-certificates package); the host's bundle, which trusts the
    # TLS-intercepting proxy, is deliberately NOT copied in.
    [ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "rootfs has no CA bundle"
    tar -C "$rootfs" --numeric-owner --xattrs -cf "$tmp/rootfs.tar" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' .
    mv "$tmp/rootfs.tar" "$ROOTFS_TAR"
    rm -rf "$tmp"
    log "rootfs cached: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1))"
}

ensure_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present ($(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c1-19))"
        return 0
    fi
    step "rootfs tarball" build_rootfs_tar
    step "docker import" import_base_image
    docker run --rm --network none "$BASE_IMAGE" python3 -c 'import sys, venv, ensurepip; print(sys.version.split()[0])' \
        | sed 's/^/[services] base image python: /' >&2
}

import_base_image() {
    log "docker import $ROOTFS_TAR $BASE_IMAGE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL org.opencontainers.image.title=mlenv-test-debian-python' \
        --change "LABEL org.opencontainers.image.description=\"debootstrap --variant=minbase --include=$DEBOOTSTRAP_INCLUDE $SUITE\"" \
        --change 'CMD ["python3"]' \
        --message "debootstrap --variant=minbase $SUITE" \
        "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
}

# ----------------------------------------------------------------- registry --

port_free() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
# Like the registry (Go sets SO_REUSEADDR): TIME_WAIT leftovers of a previous
# run must not make the port look busy; a live listener still does.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

registry_answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 3 "http://$1/v2/" 2>/dev/null)" = 200 ]
}

ensure_registry() {
    mkdir -p "$REG_DIR"
    local pid port
    pid="$(read_pid "$REG_PID")"
    port="$(cat "$REG_PORT_FILE" 2>/dev/null || true)"
    if pid_alive "$pid" docker-registry && [ -n "$port" ] && registry_answers "127.0.0.1:$port"; then
        log "registry already running (pid $pid) on 127.0.0.1:$port"
        REGISTRY="127.0.0.1:$port"
        return 0
    fi
    if pid_alive "$pid" docker-registry; then
        log "registry pid $pid does not answer on port ${port:-?}; restarting it"
        stop_pid "$REG_PID" docker-registry 10
    fi
    rm -f "$REG_PID"
    if port_free 5000; then port=5000; else port="$(free_port)"; fi
    # Storage is kept across down/up (the base image push is then a no-op);
    # MLENV_CI_FRESH_REGISTRY=1 starts from an empty registry.
    if [ "${MLENV_CI_FRESH_REGISTRY:-0}" = 1 ]; then
        log "MLENV_CI_FRESH_REGISTRY=1: wiping $REG_DATA"
        rm -rf "$REG_DATA"
    fi
    mkdir -p "$REG_DATA"
    cat >"$REG_CONFIG" <<EOF
# Generated by .ci/services.sh up
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DATA
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
    printf '%s\n' "$port" >"$REG_PORT_FILE"
    log "starting docker-registry serve $REG_CONFIG on 127.0.0.1:$port (log: $REG_LOG)"
    : >"$REG_LOG"
    spawn "$REG_PID" "$REG_LOG" docker-registry serve "$REG_CONFIG"
    pid="$(read_pid "$REG_PID")"
    local i
    for i in $(seq 1 100); do
        registry_answers "127.0.0.1:$port" && break
        if ! pid_alive "$pid" docker-registry; then
            tail -n 20 "$REG_LOG" >&2
            rm -f "$REG_PID"
            die "docker-registry exited during startup (log: $REG_LOG)"
        fi
        sleep 0.1
    done
    registry_answers "127.0.0.1:$port" || die "registry did not answer on 127.0.0.1:$port"
    log "registry up (pid $pid) on 127.0.0.1:$port"
    REGISTRY="127.0.0.1:$port"
}

push_base_image() {
    local remote="$REGISTRY/$BASE_IMAGE" code digest
    # Skip the push when the registry already holds exactly the local image
    # (the daemon recorded the registry's manifest digest for it).
    digest="$(curl -s -o /dev/null -D - --noproxy '*' -I \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY/v2/$BASE_REPO/manifests/$BASE_TAG" \
        | tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" { print $2 }')"
    if [ -n "$digest" ] && docker image inspect "$remote" >/dev/null 2>&1 \
        && docker image inspect -f '{{join .RepoDigests "\n"}}' "$BASE_IMAGE" | grep -qxF "$REGISTRY/$BASE_REPO@$digest"; then
        log "$remote already in the registry ($digest)"
        return 0
    fi
    docker tag "$BASE_IMAGE" "$remote"
    log "docker push $remote (plain http: 127.0.0.0/8 is an insecure registry by default)"
    docker push "$remote" >"$WORK/push.log" 2>&1 || {
        cat "$WORK/push.log" >&2
        die "docker push $remote failed"
    }
    tail -n 1 "$WORK/push.log" | sed 's/^/[services] /' >&2
    code="$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -I \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$REGISTRY/v2/$BASE_REPO/manifests/$BASE_TAG")"
    [ "$code" = 200 ] || die "manifest of $remote not found after push (HTTP $code)"
}

write_env() {
    local tmp="$ENV_FILE.tmp"
    {
        echo "# Written by .ci/services.sh up; source it before running the tests."
        echo "export MLENV_TEST_REGISTRY=$REGISTRY"
        echo "export MLENV_TEST_BASE_IMAGE=$BASE_IMAGE"
        echo "export MLENV_TEST_BASE_IMAGE_REMOTE=$REGISTRY/$BASE_IMAGE"
        echo "export MLENV_TEST_REGISTRY_DATA=$REG_DATA"
        echo "export MLENV_REQUIRE_DOCKER=1"
        # chromium + chromium-driver come from ensure_packages: the web catalog's browser tests must run
        echo "export MLENV_REQUIRE_BROWSER=1"
        if [ -n "${DOCKER_HOST:-}" ]; then
            echo "export DOCKER_HOST=$DOCKER_HOST"
        fi
    } >"$tmp"
    mv "$tmp" "$ENV_FILE"
    sed 's/^/[services]   /' "$ENV_FILE" >&2
}

# ---------------------------------------------------------------- commands --

cmd_up() {
    local t0
    t0="$(now)"
    mkdir -p "$WORK"
    step "packages" ensure_packages
    step "dockerd" ensure_dockerd
    step "base image" ensure_base_image
    step "registry" ensure_registry
    step "push base image" push_base_image
    step "env file" write_env
    log "up: total $(elapsed "$t0"); env file: $ENV_FILE"
}

cmd_down() {
    local t0
    t0="$(now)"
    local port
    port="$(cat "$REG_PORT_FILE" 2>/dev/null || true)"
    step "registry" stop_pid "$REG_PID" docker-registry 10
    if [ -n "$port" ]; then
        rm -f "$REG_PORT_FILE"
        if docker_ok; then
            docker rmi "127.0.0.1:$port/$BASE_IMAGE" >/dev/null 2>&1 || true
        fi
    fi
    if [ -e "$DOCKERD_PID" ]; then
        step "dockerd" stop_pid "$DOCKERD_PID" dockerd 60
    else
        log "dockerd: not started by us; left alone"
    fi
    rm -f "$ENV_FILE"
    log "down: total $(elapsed "$t0")"
}

cmd_env() {
    [ -f "$ENV_FILE" ] || die "no $ENV_FILE; run: bash .ci/services.sh up"
    cat "$ENV_FILE"
}

cmd_status() {
    local ok=0 port
    if docker_ok; then log "dockerd: up"; else log "dockerd: DOWN"; ok=1; fi
    port="$(cat "$REG_PORT_FILE" 2>/dev/null || true)"
    if [ -n "$port" ] && pid_alive "$(read_pid "$REG_PID")" docker-registry && registry_answers "127.0.0.1:$port"; then
        log "registry: up on 127.0.0.1:$port"
    else
        log "registry: DOWN"
        ok=1
    fi
    if [ -f "$ENV_FILE" ]; then log "env file: $ENV_FILE"; else log "env file: missing"; ok=1; fi
    return "$ok"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
status) cmd_status ;;
*)
    echo "usage: bash .ci/services.sh up|down|env|status" >&2
    exit 2
    ;;
esac
