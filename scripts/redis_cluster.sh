#!/usr/bin/env bash
# A local Redis Cluster of Debian's redis-server processes, for trying the cluster backend,
# benchmarks and the tests (tests/support/redis_cluster.py drives this script).
#
#   scripts/redis_cluster.sh start DIR PORT...   one node per port on 127.0.0.1, half masters and
#                                                half replicas (one replica each; 6 ports: 3 + 3)
#   scripts/redis_cluster.sh stop DIR            stop every node started in DIR
#
# Each node keeps its cluster config, pid file and log in DIR/PORT/, and nothing else on disk
# (--save '' --appendonly no). A short cluster-node-timeout (FEATURESTORE_CLUSTER_NODE_TIMEOUT,
# 1000 ms by default) makes a failover take a few seconds. Then use
#   [online] redis_url = "redis+cluster://127.0.0.1:PORT1,127.0.0.1:PORT2/"
set -euo pipefail

usage() {
	echo "usage: $0 start DIR PORT... | stop DIR" >&2
	exit 2
}
[[ $# -ge 2 ]] || usage
command=$1
dir=$2
shift 2

stop() {
	local pidfile pid pids=()
	# Every node is told first, then waited for: an exited daemon stays a zombie until init
	# reaps it (seconds in some containers), so one node after the other took 2 s each. The
	# pids are read first: a node removes its pid file as it exits.
	for pidfile in "$dir"/*/redis.pid; do
		[[ -f $pidfile ]] || continue
		pid=$(cat "$pidfile" 2>/dev/null) || continue
		pids+=("$pid")
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 100); do # up to 10 s each
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	done
	rm -f "$dir"/*/redis.pid
}

case $command in
stop)
	stop
	exit 0
	;;
start) ;;
*) usage ;;
esac

(($# >= 6 && $# % 2 == 0)) || {
	echo "redis_cluster.sh: give an even number of ports, at least 6 (3 masters and 3 replicas)" >&2
	exit 2
}
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
	echo "redis_cluster.sh: redis-server and redis-cli are needed (make redis-server installs them)" >&2
	exit 1
}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
trap 'stop' ERR # a cluster half made is not left running

nodes=()
for port in "$@"; do
	mkdir -p "$dir/$port"
	rm -f "$dir/$port/nodes.conf" # a new cluster each time
	redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
		--dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
		--save '' --appendonly no \
		--cluster-enabled yes --cluster-config-file nodes.conf \
		--cluster-node-timeout "${FEATURESTORE_CLUSTER_NODE_TIMEOUT:-1000}"
	nodes+=("127.0.0.1:$port")
done
# Up to 10 s each; a port something else holds (and never answers) must not hang this.
for port in "$@"; do
	end=$((SECONDS + 10))
	until [[ $(timeout 1 redis-cli -p "$port" ping 2>/dev/null) == PONG ]] || ((SECONDS >= end)); do
		sleep 0.1
	done
done

timeout 30 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
	cat "$dir/create.log" >&2
	false
}
# Ready when every node sees every slot served and every replica has synced.
for port in "$@"; do
	for i in $(seq 300); do
		info=$(timeout 1 redis-cli -p "$port" cluster info 2>/dev/null || true)
		role=$(timeout 1 redis-cli -p "$port" role 2>/dev/null | sed -n '1p;4p' | tr '\n' ' ')
		if [[ $info == *cluster_state:ok* && $info == *cluster_slots_ok:16384* &&
			$info == *"cluster_known_nodes:$#"* && ($role == master* || $role == *connected*) ]]; then
			break
		fi
		((i < 300)) || {
			echo "redis_cluster.sh: node $port not ready after 30 s" >&2
			false
		}
		sleep 0.1
	done
done
echo "cluster of $# nodes on 127.0.0.1 ports $*: redis+cluster://127.0.0.1:$1,127.0.0.1:$2/"
