#!/usr/bin/env bash
# The main job end to end on the example repo, printing each command as it runs it.
set -euo pipefail
repo=${1:-definitions}
fs=".venv/bin/featurestore"
py=".venv/bin/python"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# Registry: declare, review, record.
step $fs plan --repo "$repo"
step $fs apply --repo "$repo"
step $fs list --repo "$repo"
step $fs describe trip_model --repo "$repo"

# Offline: ingest the Parquet sources into DuckDB, then a point-in-time correct training set.
step $fs materialize --offline --repo "$repo"
train="$repo/.featurestore/trip_model_training.parquet"
step $fs training-set --repo "$repo" --entities "$repo/data/entity_rows.parquet" --service trip_model \
	--out "$train"
step $py -c 'import sys, pyarrow.parquet as pq
print(pq.read_metadata(sys.argv[1]).num_rows, "rows; the first five, some columns:")
print(pq.read_table(sys.argv[1], columns=sys.argv[2:]).slice(0, 5).to_pandas().to_string(index=False))' \
	"$train" driver_id customer_id event_timestamp trip_completed conv_rate city current_balance

# ---- ONLINE STEPS GO HERE (added with the online store): materialize into Redis, serve, get ----
# `make demo` has already made sure a Redis server answers at the repo's URL (scripts/ensure_redis.sh).
