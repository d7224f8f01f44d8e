#!/usr/bin/env bash
# The main job end to end on the example repo, printing each command as it runs it.
set -euo pipefail
repo=${1:-definitions}
fs=".venv/bin/featurestore"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $fs plan --repo "$repo"
step $fs apply --repo "$repo"
step $fs list --repo "$repo"
step $fs describe trip_model --repo "$repo"
