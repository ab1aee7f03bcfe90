#!/usr/bin/env bash
# Install what gitkube and its sandbox need on a fresh Debian machine (root), and the package in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run as root (apt-get, network namespaces)" >&2; exit 2; fi
need=()
for b in dockerd sshd ssh-keygen busybox ip iptables conntrack nsenter haproxy dnsmasq redis-server age prometheus chromium chromedriver etcd etcdctl; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || need+=("$b")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup.sh: installing system packages (missing: ${need[*]})" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q docker.io openssh-server openssh-client busybox-static iproute2 iptables conntrack util-linux \
    haproxy dnsmasq-base redis-server redis-tools age \
    prometheus chromium chromium-driver etcd-server etcd-client  # monitoring tests: a real Prometheus, the dashboard in headless Chromium; etcd: the store for 2+ controllers
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "setup.sh: ready (.venv/bin/gitkube)" >&2
