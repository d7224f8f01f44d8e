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
# Outputs go beside the store, never inside its folder or over a source (training-set refuses those).
mkdir -p "$repo/out"
train="$repo/out/trip_model_training.parquet"
step $fs training-set --repo "$repo" --entities "$repo/data/entity_rows.parquet" --service trip_model \
	--out "$train"
step $py -c 'import sys, pyarrow.parquet as pq
print(pq.read_metadata(sys.argv[1]).num_rows, "rows; the first five, some columns:")
print(pq.read_table(sys.argv[1], columns=sys.argv[2:]).slice(0, 5).to_pandas().to_string(index=False))' \
	"$train" driver_id customer_id event_timestamp trip_completed conv_rate city current_balance
# Aggregations over sliding windows of trip events, each as of the entity row's own time.
dispatch="$repo/out/dispatch_model_training.parquet"
step $fs training-set --repo "$repo" --entities "$repo/data/entity_rows.parquet" --service dispatch_model \
	--out "$dispatch"
step $py -c 'import sys, pyarrow.parquet as pq
print(pq.read_table(sys.argv[1], columns=sys.argv[2:]).slice(0, 5).to_pandas().to_string(index=False))' \
	"$dispatch" driver_id event_timestamp trips_1h trips_24h fare_sum_1d payment_last3_1d trips_lifetime
# On-demand features (definitions/pricing.py): computed by trip_fit on the joined rows, with the
# request field trip_km read from the entity rows' column of that name.
pricing="$repo/out/pricing_model_training.parquet"
step $fs training-set --repo "$repo" --entities "$repo/data/entity_rows.parquet" --service pricing_model \
	--out "$pricing"
step $py -c 'import sys, pyarrow.parquet as pq
print(pq.read_table(sys.argv[1], columns=sys.argv[2:]).slice(0, 5).to_pandas().to_string(index=False))' \
	"$pricing" driver_id event_timestamp trip_km earnings_per_trip km_over_last_trip

# Online: materialize the newest values into Redis, serve them over gRPC and HTTP, fetch them.
step $fs materialize --repo "$repo"
grpc_port=${DEMO_GRPC_PORT:-6566}
http_port=${DEMO_HTTP_PORT:-6567}
ui_port=${DEMO_UI_PORT:-8888}
printf '\n\033[1m$ %s\033[0m\n' "$fs serve --repo $repo --grpc-port $grpc_port --http-port $http_port &"
$fs serve --repo "$repo" --grpc-port "$grpc_port" --http-port "$http_port" &
server=$!
ui=
trap 'kill -TERM $server $ui 2>/dev/null; wait $server $ui 2>/dev/null' EXIT
$py - "$http_port" <<'PY'  # wait until the server answers its health check
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the server did not become healthy")
PY
driver=$($py -c 'import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).column("driver_id")[0])' \
	"$repo/data/entity_rows.parquet")
step $fs get --repo "$repo" --server "127.0.0.1:$grpc_port" --entity "driver_id=$driver,999999" \
	--features driver_stats:conv_rate,driver_stats:rating,driver_stats:city
step $py -c 'import sys, featurestore
with featurestore.Client(sys.argv[1]) as client:
    r = client.get_online_features("trip_model", {"driver_id": [int(sys.argv[2])], "customer_id": [5001]})
print({k: v[0] for k, v in r.to_dict().items()})' "127.0.0.1:$grpc_port" "$driver"
step $fs get --repo "$repo" --server "127.0.0.1:$grpc_port" --entity "driver_id=$driver" --service dispatch_model
# On-demand: the same trip_fit, run by the server after the lookup, with the trip in request_data.
step $fs get --repo "$repo" --server "127.0.0.1:$grpc_port" --entity "driver_id=$driver" --service pricing_model \
	--request trip_km=7.5
step $py -c 'import sys, featurestore
with featurestore.Client(sys.argv[1]) as client:
    r = client.get_online_features("pricing_model", {"driver_id": [int(sys.argv[2])]}, request_data={"trip_km": [7.5]})
print({k: v[0] for k, v in r.to_dict().items()}, r.statuses["earnings_per_trip"])' "127.0.0.1:$grpc_port" "$driver"
step $py -c 'import json, sys, urllib.request
body = {"features": ["trip_fit:km_over_last_trip"], "entities": {"driver_id": [int(sys.argv[2])]},
        "request_data": {"trip_km": [7.5]}}
req = urllib.request.Request(sys.argv[1], json.dumps(body).encode(), {"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode())' "http://127.0.0.1:$http_port/v1/online-features" "$driver"

# Push: a fresh row for the driver, served at once (and durable offline for training sets).
pushed="$repo/out/pushed_driver_stats.parquet"
$py - "$repo/data/driver_stats" "$driver" "$pushed" <<'PY'
import sys
from datetime import UTC, datetime
import pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.parquet as pq
rows = ds.dataset(sys.argv[1]).to_table(filter=pc.field("driver_id") == int(sys.argv[2])).slice(0, 1)
now = pa.array([datetime.now(UTC)], rows.schema.field("event_timestamp").type)
rows = rows.set_column(rows.schema.get_field_index("event_timestamp"), "event_timestamp", now)
rows = rows.set_column(rows.schema.get_field_index("created"), "created", now.cast(rows.schema.field("created").type))
rows = rows.set_column(rows.schema.get_field_index("conv_rate"), "conv_rate", pa.array([0.99], pa.float32()))
pq.write_table(rows, sys.argv[3])
PY
step $fs push --repo "$repo" --server "127.0.0.1:$grpc_port" --view driver_stats "$pushed"
step $fs get --repo "$repo" --server "127.0.0.1:$grpc_port" --entity "driver_id=$driver" --features driver_stats:conv_rate
step $py -c 'import json, sys, urllib.request
body = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [int(sys.argv[2])]}}
req = urllib.request.Request(sys.argv[1], json.dumps(body).encode(), {"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode())' "http://127.0.0.1:$http_port/v1/online-features" "$driver"
# ... and, once ingested with the push log, in a training set at the time it was pushed.
step $fs materialize --repo "$repo" --offline --views driver_stats
step $py - "$repo" "$driver" "$pushed" <<'PY'
import sys
import pyarrow as pa, pyarrow.parquet as pq
from featurestore import FeatureStore
pushed = pq.read_table(sys.argv[3])
entities = pa.table({"driver_id": [int(sys.argv[2])], "event_timestamp": pushed.column("event_timestamp")})
with FeatureStore(sys.argv[1]).get_training_set(entities, ["driver_stats:conv_rate"]) as ts:
    print("training set row at the push time:", ts.to_arrow().to_pylist()[0])
PY

# The web console over the same store: catalog, versions, lineage, runs, health, statistics.
printf '\n\033[1m$ %s\033[0m\n' "$fs ui --repo $repo --port $ui_port &"
$fs ui --repo "$repo" --port "$ui_port" &
ui=$!
$py - "http://127.0.0.1:$ui_port/" <<'PY'  # wait until it answers, then show what its catalog lists
import re, sys, time, urllib.request
for _ in range(200):
    try:
        page = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the console did not answer")
views = re.search(r'>Feature views(?:</a>)? <span class="muted">\((\d+)\)', page)
print(f"the console answers at {sys.argv[1]}: its catalog lists {views.group(1) if views else '?'} feature views")
PY
printf '\nThe web console was at http://127.0.0.1:%s/ while the demo ran; open it again with:\n' "$ui_port"
printf '  %s ui --repo %s   (then browse http://127.0.0.1:%s/)\n' "$fs" "$repo" "$ui_port"
