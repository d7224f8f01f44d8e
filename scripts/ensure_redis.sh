#!/usr/bin/env bash
# Make sure a Redis server answers at a feature repo's online store URL; start one if not.
#
#   scripts/ensure_redis.sh [REPO]         ping; start a local redis-server if nothing answers
#   scripts/ensure_redis.sh --stop [REPO]  stop the server this script started for that URL (only that one)
#
# The URL is the repo's, as featurestore reads it: FEATURESTORE_REDIS_URL, else
# [online] redis_url in REPO/featurestore.toml, else redis://127.0.0.1:6379/0.
# Only a loopback TCP URL is started here; anything else must already be running.
# The server it starts keeps nothing on disk (--save '' --appendonly no); its pid file and
# log go to REPO/.featurestore/redis-PORT.{pid,log}.
set -euo pipefail

stop=0
if [[ ${1:-} == --stop ]]; then
	stop=1
	shift
fi
repo=${1:-definitions}
here=$(cd "$(dirname "$0")/.." && pwd)
python="$here/.venv/bin/python"
[[ -x $python ]] || python=python3

# The URL featurestore itself would use, so the script and the CLI cannot disagree.
url=$(
	"$python" - "$repo" <<'EOF'
import os, sys
try:
    from featurestore.config import load_config
    print(load_config(sys.argv[1]).redis_url)
except Exception:  # package not installed yet, or no featurestore.toml: the documented default
    print(os.environ.get("FEATURESTORE_REDIS_URL") or "redis://127.0.0.1:6379/0")
EOF
)
# host port password, from the URL (scheme, user and db do not matter for starting a server).
read -r scheme host port password < <(
	"$python" - "$url" <<'EOF'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.scheme, u.hostname or "-", u.port or 6379, u.password or "-")
EOF
)

shown=${url/:$password@/:***@}  # never print the password
state="$(cd "$repo" && pwd)/.featurestore"
pidfile="$state/redis-$port.pid"

# PING through redis-py when the venv has it (it reads every URL form featurestore accepts),
# else through redis-cli.
if "$python" -c 'import redis' 2>/dev/null; then
	ping() {
		"$python" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1], socket_timeout=1).ping()' \
			"$url" >/dev/null 2>&1
	}
else
	ping() { [[ $(redis-cli -u "$url" --no-auth-warning ping 2>/dev/null) == PONG ]]; }
fi

if ((stop)); then
	if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		kill "$(cat "$pidfile")"
		echo "redis: stopped the redis-server this script started on port $port (pid $(cat "$pidfile"))"
		rm -f "$pidfile"
	else
		echo "redis: no server started by this script is running"
	fi
	exit 0
fi

if ping; then
	echo "redis: a server already answers at $shown"
	exit 0
fi

if [[ $scheme != redis ]] || [[ ! $host =~ ^(127\.[0-9.]+|localhost|::1)$ ]]; then
	echo "redis: nothing answers at $shown, and only a loopback redis:// URL can be started here;" \
		"start that server, or set FEATURESTORE_REDIS_URL" >&2
	exit 1
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "redis: redis-server is not installed (make setup installs Debian's package)" >&2
	exit 1
fi

mkdir -p "$state"
args=(--port "$port" --bind "$host" --daemonize yes --save '' --appendonly no
	--dir "$state" --pidfile "$pidfile" --logfile "$state/redis-$port.log")
[[ $password != - ]] && args+=(--requirepass "$password")
if ! redis-server "${args[@]}"; then
	echo "redis: redis-server failed to start; see $repo/.featurestore/redis-$port.log" >&2
	exit 1
fi
for _ in $(seq 100); do
	if ping; then
		echo "redis: started redis-server on $host:$port (pid $(cat "$pidfile" 2>/dev/null || echo '?')," \
			"no persistence, log $repo/.featurestore/redis-$port.log); stop it with scripts/ensure_redis.sh --stop $repo"
		exit 0
	fi
	sleep 0.1
done
echo "redis: started redis-server on $host:$port but it does not answer PING after 10s;" \
	"see $repo/.featurestore/redis-$port.log (is the port taken by another program?)" >&2
exit 1
