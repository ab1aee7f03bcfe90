#!/usr/bin/env bash
# The main job on a fresh machine: install, bring up a 3-node local fleet (sandbox 0, matching inventory.yaml),
# build and ship the project's images, apply the example manifests and show what runs where.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
GK=".venv/bin/gitkube"
$GK sandbox --id 0 up --nodes 3
if $GK images --help >/dev/null 2>&1; then
  $GK images build
  $GK images load all --inventory inventory.yaml
fi
$GK get nodes -o wide --inventory inventory.yaml
echo "--- applying manifests/guestbook (waiting until every pod is Running and Ready)" >&2
$GK apply --repo . --path manifests/guestbook --inventory inventory.yaml --age-identity manifests/DEMO-ONLY-age-identity.txt --wait --timeout 240
echo "--- applying all example manifests (hello-world, the Pod chapter)" >&2
$GK apply --repo . --path manifests --inventory inventory.yaml --age-identity manifests/DEMO-ONLY-age-identity.txt
sleep 3
$GK apply --repo . --path manifests --inventory inventory.yaml --age-identity manifests/DEMO-ONLY-age-identity.txt
echo "--- what runs where" >&2
$GK get pods -o wide
$GK get rc
$GK get svc
port=$($GK get svc frontend -o json 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); print(next((p.get("nodePort") for p in s["spec"]["ports"] if p.get("nodePort")), ""))' || true)
if [ -n "$port" ]; then
  echo "Guestbook: http://198.18.0.11:$port/  (any node: 198.18.0.11-13)"
fi
echo "Keep it in sync continuously: sudo $GK serve --repo . --inventory inventory.yaml ; tear down: sudo $GK sandbox down" >&2
