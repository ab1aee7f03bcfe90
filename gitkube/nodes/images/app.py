"""The project's own images, built on the controller from Debian's packages (no registry): the node proxy
(HAProxy), the cluster DNS (dnsmasq), and the Guestbook's redis and frontend. Each is a deterministic
`docker save` archive (same host files, same image ID), so shipping skips nodes that already have it."""
from __future__ import annotations

import os
import shutil

from gitkube.nodes.images.archive import ImageArchive, ImageBuildError, RootFS, build_archive, busybox_image, busybox_rootfs, pause_image

HAPROXY_IMAGE = "gitkube/haproxy:2"
DNSMASQ_IMAGE = "gitkube/dnsmasq:2"
IPTABLES_IMAGE = "gitkube/iptables:5"
REDIS_IMAGE = "gitkube/redis:7"
FRONTEND_IMAGE = "gitkube/guestbook-frontend:v1"
FRONTEND_V2_IMAGE = "gitkube/guestbook-frontend:v2"

# program -> the Debian package that ships it
PACKAGES = {
    "haproxy": "haproxy",
    "dnsmasq": "dnsmasq-base",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "xtables-nft-multi": "iptables",
    "conntrack": "conntrack",
}
# The iptables extensions the kernel proxy's rules use (gitkube.reconcile.iptables), from Debian's iptables.
XTABLES_MODULES = ("standard", "tcp", "udp", "sctp", "comment", "statistic", "mark", "MARK", "MASQUERADE", "DNAT",
                   "addrtype", "conntrack")

# Until the first sync writes the real one: a valid configuration that serves nothing.
HAPROXY_EMPTY_CFG = b"""\
global
    maxconn 4096
    stats socket /run/haproxy/admin.sock mode 600 level user expose-fd listeners
defaults
    mode tcp
    timeout connect 3s
    timeout client 1h
    timeout server 1h
"""


def program(name: str) -> str:
    """The controller's path of a program an image is built from; says which Debian package to install if missing."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None)
    if not path:
        raise ImageBuildError(f"{name} is not installed on the controller; install it with: apt-get install -y {PACKAGES[name]}")
    return path


def _with(fs: RootFS, *programs: str) -> RootFS:
    for prog in programs:
        fs.add_binary_with_libs(program(prog))
    return fs


def haproxy_image() -> ImageArchive:
    """`gitkube/haproxy:2`: Debian's haproxy in master-worker mode, reloaded by SIGUSR2 to its PID 1."""
    fs = _with(busybox_rootfs(), "haproxy")
    fs.add_file("etc/haproxy/haproxy.cfg", HAPROXY_EMPTY_CFG)
    fs.add_dir("run/haproxy")
    return build_archive(HAPROXY_IMAGE, fs, {
        "Entrypoint": [program("haproxy"), "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"],
        "StopSignal": "SIGUSR1",  # soft stop: let established connections finish within the grace period
        "Labels": {"io.gitkube.image": "haproxy"},
    })


def dnsmasq_image() -> ImageArchive:
    """`gitkube/dnsmasq:2`: Debian's dnsmasq; the command line (addresses, hosts file) is given at run time."""
    fs = _with(busybox_rootfs(), "dnsmasq")
    fs.add_file("etc/gk/hosts", b"")
    fs.add_dir("var/lib/misc")
    return build_archive(DNSMASQ_IMAGE, fs, {
        "Entrypoint": [program("dnsmasq"), "-k"],
        "Labels": {"io.gitkube.image": "dnsmasq"},
    })


# The kernel proxy (Services by iptables, nft backend as the nodes' own iptables): a reader applies /run/gk/rules
# for every line written to the FIFO /run/gk/trigger (at start, on SIGHUP, and whenever the controller writes one
# over SFTP: a few ms, where a Docker kill call over SSH took 30-80 ms), one apply at a time, and reports "<tag>
# <exit code>" in /run/gk/status (what iptables said: /run/gk/error). /run/gk is a node directory bound in
# (gitkube.nodes.dataplane.kernelproxy); the FIFO is owned by that directory's owner (the SSH user). Both ends
# hold it open read-write, so no open ever blocks and a line written before the reader reads it is kept.
KERNEL_PROXY_LOOP = b"""\
trap 'echo hup >&3' HUP
trap 'exit 0' TERM INT
mkdir -p /run/gk
rm -f /run/gk/trigger
mkfifo -m 600 /run/gk/trigger && chown "$(stat -c %u:%g /run/gk)" /run/gk/trigger
exec 3<>/run/gk/trigger
( cd /run/gk && . /gk/apply && while read -r why <&3; do [ -f rules ] && gk_apply "$why"; done ) &
echo start >&3
while :; do
  sleep 2147483647 & pid=$!
  wait $pid
  kill $pid 2>/dev/null
done
"""

# One iptables-restore transaction for what changed, as kube-proxy's (each table's commit costs ~15 ms on a busy
# node, whatever its size). A copy of `rules` is applied (the controller may replace the file meanwhile): a chain
# is rewritten (declared, so flushed, then filled) when its rules differ from the copy applied last, or the node
# lacks it or holds another number of rules in it; chains the new rules no longer declare are flushed and
# deleted; an unchanged table is left out, and so is an empty transaction. At start and on SIGHUP (argument other
# than `rules`) every chain is rewritten. Then missing jumps into gitkube's chains are inserted first in place.
# A function of the reader's shell (sourced once): three processes per apply (iptables-save, awk, iptables-
# restore), each of which costs on a busy node; the copies alternate between two names, the last good one kept in
# a shell variable.
KERNEL_PROXY_APPLY = b"""\
last=""
gk_apply() {
  if [ "$last" = applied.a ]; then next=applied.b; else next=applied.a; fi
  if [ "$1" = rules ] && [ -n "$last" ]; then full=0; old=$last; else full=1; old=/dev/null; fi
  : > missing
  iptables-save > saved 2> error
  awk -v full=$full -v old=$old -v copy=$next -v missing=/run/gk/missing '
FILENAME == "saved" {
  if ($0 ~ /^\\*/) { t = substr($0, 2); next }
  if ($0 ~ /^:GK-/) { split($0, a, " "); c = substr(a[1], 2); have[t, c] = 1; had[t] = had[t] " " c }
  if ($0 ~ /^-A /) { rule[t, $0] = 1; count[t, $2]++ }
  next
}
FILENAME == old {
  if ($0 ~ /^\\*/) { t = substr($0, 2); next }
  if ($0 ~ /^-A /) prev[t, $2] = prev[t, $2] $0 "\\n"
  next
}
FILENAME == "rules" {
  print > copy
  if ($0 ~ /^\\*/) { t = substr($0, 2); order[++n] = t; next }
  if ($0 ~ /^:GK-/) { split($0, a, " "); c = substr(a[1], 2); want[t, c] = 1; chains[t] = chains[t] " " c }
  if ($0 ~ /^-A /) { new[t, $2] = new[t, $2] $0 "\\n"; num[t, $2]++ }
  next
}
{ if (!(($1, "-A " $2 " -j " $3) in rule)) print $1, $2, $3 > missing }
END {
  for (i = 1; i <= n; i++) {
    t = order[i]; decl = ""; body = ""; gone = ""
    m = split(chains[t], cs, " ")
    for (j = 1; j <= m; j++) {
      c = cs[j]
      if (full || !((t, c) in have) || new[t, c] != prev[t, c] || count[t, c] + 0 != num[t, c] + 0) {
        decl = decl ":" c " - [0:0]\\n"; body = body new[t, c]
      }
    }
    m = split(had[t], cs, " ")
    for (j = 1; j <= m; j++)
      if (!((t, cs[j]) in want)) { decl = decl ":" cs[j] " - [0:0]\\n"; gone = gone "-X " cs[j] "\\n" }
    if (decl != "") printf "*%s\\n%s%s%sCOMMIT\\n", t, decl, body, gone
  }
}' saved $old rules /gk/jumps > input || { last=""; read -r _ _ tag < rules; echo "$tag 1" > status; return; }
  read -r _ _ tag < $next
  rc=0
  [ -s input ] && { iptables-restore --noflush < input > error 2>&1; rc=$?; }
  if [ $rc = 0 ] && [ -s missing ]; then
    while read t c g; do
      iptables -t $t -I $c 1 -j $g >> error 2>&1 || rc=$?
    done < missing
  fi
  # UDP flows whose endpoint left, or that were made while their service port had none (see
  # gitkube.reconcile.iptables): their conntrack entries go, before the status says the rules are in effect.
  [ $rc = 0 ] && [ "$old" != /dev/null ] && gk_udp_flush "$old" "$next"
  if [ $rc = 0 ]; then last=$next; else last=""; fi
  echo "$tag $rc" > status
}
gk_udp_flush() {
  awk -v old="$1" '
FILENAME == old { if ($1 == "#gk-udp") { had[$2 " " $3 " " $4 " " $5] = 1; served[$2 " " $3] = 1 } next }
$1 == "#gk-udp" { has[$2 " " $3 " " $4 " " $5] = 1; if (!(($2 " " $3) in served)) fresh[$2 " " $3 " " $4] = 1 }
END { for (k in had) if (!(k in has)) print "gone", k; for (k in fresh) print "fresh", k }' "$1" "$2" > udp
  [ -s udp ] || return 0
  while read -r what cip port np ep; do
    if [ "$what" = gone ]; then
      conntrack -D -p udp --orig-dst "$cip" --orig-port-dst "$port" --reply-src "$ep"
      [ "$np" = 0 ] || conntrack -D -p udp --orig-port-dst "$np" --reply-src "$ep"
    else
      conntrack -D -p udp --orig-dst "$cip" --orig-port-dst "$port"
      [ "$np" = 0 ] || conntrack -D -p udp --orig-port-dst "$np"
    fi
  done < udp > conntrack.out 2>&1
  return 0
}
"""

# Removes every trace: the jumps, then gitkube's chains (a node switched back to HAProxy, or leaving).
KERNEL_PROXY_TEARDOWN = rb"""
iptables-save > /tmp/saved
while read t c g; do
  while iptables -t $t -D $c -j $g 2>/dev/null; do :; done
done < /gk/jumps
for t in nat filter; do
  chains=$(awk -v t="*$t" '$0 == t {on = 1; next} on && $0 == "COMMIT" {on = 0} on' /tmp/saved | sed -n 's/^:\(GK-[^ ]*\) .*/\1/p')
  [ -n "$chains" ] || continue
  { echo "*$t"; for c in $chains; do echo ":$c - [0:0]"; done; for c in $chains; do echo "-X $c"; done; echo COMMIT; } \
    | iptables-restore --noflush
done
echo done
"""


def iptables_image() -> ImageArchive:
    """`gitkube/iptables:5`: Debian's xtables-nft-multi (as iptables, iptables-save, iptables-restore) with the
    extensions the kernel proxy uses, Debian's conntrack (stale UDP flows), and its apply loop."""
    from gitkube.reconcile.iptables import JUMPS

    fs = _with(busybox_rootfs(), "xtables-nft-multi", "conntrack")
    multi = program("xtables-nft-multi")
    for name in ("iptables", "iptables-save", "iptables-restore"):
        fs.add_symlink(f"usr/sbin/{name}", multi)
    libdir = next((d for d in ("/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/aarch64-linux-gnu/xtables",
                               "/usr/lib/xtables") if os.path.isdir(d)), None)
    if libdir is None:
        raise ImageBuildError("iptables' extensions are not installed; install them with: apt-get install -y iptables")
    for mod in XTABLES_MODULES:
        fs.add_binary_with_libs(os.path.join(libdir, f"libxt_{mod}.so"))
    fs.add_file("gk/kube-proxy", KERNEL_PROXY_LOOP, 0o755)
    fs.add_file("gk/apply", KERNEL_PROXY_APPLY, 0o755)
    fs.add_file("gk/teardown", KERNEL_PROXY_TEARDOWN, 0o755)
    fs.add_file("gk/jumps", "".join(f"{t} {c} {g}\n" for t, c, g in JUMPS).encode())
    # A command, not an entrypoint: the one-shot teardown container runs its own (`sh /gk/teardown`).
    return build_archive(IPTABLES_IMAGE, fs, {
        "Cmd": ["/bin/sh", "/gk/kube-proxy"],
        "Labels": {"io.gitkube.image": "iptables"},
    })


# The redis image's entrypoint. Arguments go to redis-server as given (`--replicaof redis-master 6379`);
# REDIS_REPLICAOF="HOST PORT" makes a replica without arguments; with GET_HOSTS_FROM=env the master's host is
# REDIS_MASTER_SERVICE_HOST, as the seed's redis-slave image does.
REDIS_ENTRYPOINT = b"""\
#!/bin/sh
set -e
if [ "$#" -eq 0 ] && [ -n "$REDIS_REPLICAOF" ]; then
  set -- --replicaof $REDIS_REPLICAOF
fi
if [ "${GET_HOSTS_FROM:-dns}" = env ] && [ -n "$REDIS_MASTER_SERVICE_HOST" ]; then
  n=$#; prev=""
  while [ "$n" -gt 0 ]; do
    orig=$1; shift; n=$((n - 1)); a=$orig
    case "$prev" in --replicaof|--slaveof) a=$REDIS_MASTER_SERVICE_HOST ;; esac
    set -- "$@" "$a"; prev=$orig
  done
fi
exec /usr/bin/redis-server --protected-mode no --bind 0.0.0.0 --port 6379 --dir /data --save "" "$@"
"""


def redis_image() -> ImageArchive:
    """`gitkube/redis:7`: Debian's redis-server and redis-cli; a master, or a replica given `--replicaof`."""
    fs = _with(busybox_rootfs(), "redis-server", "redis-cli")
    if program("redis-server") != "/usr/bin/redis-server":
        fs.add_host_file(program("redis-server"), "usr/bin/redis-server")
    fs.add_file("usr/local/bin/redis-entrypoint", REDIS_ENTRYPOINT, 0o755)
    fs.add_dir("data", 0o777)
    return build_archive(REDIS_IMAGE, fs, {
        "Entrypoint": ["/usr/local/bin/redis-entrypoint"],
        "ExposedPorts": {"6379/tcp": {}},
        "WorkingDir": "/data",
        "Labels": {"io.gitkube.image": "redis"},
    })


# The Guestbook's server side, as the seed's guestbook.php: `?cmd=set&key=K&value=V` SETs on the master,
# `?cmd=get&key=K` reads from a replica; hosts by DNS names, or the Services' env vars with GET_HOSTS_FROM=env.
GUESTBOOK_CGI = b"""\
#!/bin/sh
param() {
  printf '%s' "&$QUERY_STRING" | tr '&' '\\n' | sed -n "s/^$1=//p" | head -n 1
}
json() { sed -e 's/\\\\/\\\\\\\\/g' -e 's/"/\\\\"/g' | tr -d '\\n\\r'; }
master=redis-master slave=redis-slave
if [ "${GET_HOSTS_FROM:-dns}" = env ]; then
  master=${REDIS_MASTER_SERVICE_HOST:-$master}
  slave=${REDIS_SLAVE_SERVICE_HOST:-$slave}
fi
cmd=$(param cmd)
key=$(httpd -d "$(param key | tr '+' ' ')")
printf 'Content-Type: application/json\\r\\n\\r\\n'
case "$cmd" in
  set)
    value=$(httpd -d "$(param value | tr '+' ' ')")
    if out=$(redis-cli -h "$master" -p 6379 SET "$key" "$value" 2>&1) && [ "$out" = OK ]; then
      echo '{"message": "Updated"}'
    else
      printf '{"error": "%s"}\\n' "$(printf '%s' "$out" | json)"
    fi ;;
  get)
    if out=$(redis-cli -h "$slave" -p 6379 --raw GET "$key" 2>&1); then
      printf '{"data": "%s"}\\n' "$(printf '%s' "$out" | json)"
    else
      printf '{"error": "%s"}\\n' "$(printf '%s' "$out" | json)"
    fi ;;
  *)
    printf '{"hosts": {"master": "%s", "slave": "%s"}, "host": "%s"}\\n' "$master" "$slave" "$(hostname)" ;;
esac
"""

GUESTBOOK_HTML = b"""\
<!doctype html>
<html><head><meta charset="utf-8"><title>Guestbook</title></head>
<body>
<h1>Guestbook</h1>
<form id="f"><input id="entry" autocomplete="off" placeholder="Messages"> <button>Submit</button></form>
<ul id="list"></ul>
<script>
const list = document.getElementById('list');
let entries = [];
function show(data) {
  entries = data ? data.split(',') : [];
  list.innerHTML = '';
  for (const e of entries) { const li = document.createElement('li'); li.textContent = e; list.appendChild(li); }
}
async function load() {
  const r = await fetch('guestbook.php?cmd=get&key=messages');
  show((await r.json()).data || '');
}
document.getElementById('f').onsubmit = async (ev) => {
  ev.preventDefault();
  const v = document.getElementById('entry').value.replace(/,/g, ' ');
  if (!v) return;
  const all = entries.concat([v]).join(',');
  await fetch('guestbook.php?cmd=set&key=messages&value=' + encodeURIComponent(all));
  document.getElementById('entry').value = '';
  show(all);
};
load(); setInterval(load, 2000);
</script>
</body></html>
"""


def guestbook_frontend_image(version: str = "v1") -> ImageArchive:
    """`gitkube/guestbook-frontend:v1` (or `:v2`): busybox httpd serving the page and a shell CGI that talks to redis;
    `/version` answers the image's version, which v2's page also shows in its title, so a rollout can be watched."""
    fs = _with(busybox_rootfs(), "redis-cli")
    if program("redis-cli") != "/usr/bin/redis-cli":
        fs.add_host_file(program("redis-cli"), "usr/bin/redis-cli")
    html = GUESTBOOK_HTML if version == "v1" else GUESTBOOK_HTML.replace(b"Guestbook<", f"Guestbook {version}<".encode())
    fs.add_file("var/www/index.html", html)
    fs.add_file("var/www/version", f"{version}\n".encode())
    fs.add_file("var/www/guestbook.php", GUESTBOOK_CGI, 0o755)
    fs.add_file("etc/httpd.conf", b"*.php:/bin/sh\n")
    return build_archive(FRONTEND_IMAGE if version == "v1" else f"gitkube/guestbook-frontend:{version}", fs, {
        "Entrypoint": ["/usr/sbin/httpd", "-f", "-p", "80", "-h", "/var/www", "-c", "/etc/httpd.conf"],
        "ExposedPorts": {"80/tcp": {}},
        # busybox httpd as PID 1 has no SIGTERM handler, so TERM is ignored and every stop waited out the whole
        # grace period (30 s per frontend pod); it keeps no state and its CGIs are short-lived.
        "StopSignal": "SIGKILL",
        "Labels": {"io.gitkube.image": "guestbook-frontend"},
    })


# name (as `gitkube images build NAME` takes it) -> builder; the refs are what manifests use.
BUILDERS = {
    "busybox": busybox_image,
    "pause": pause_image,
    "haproxy": haproxy_image,
    "dnsmasq": dnsmasq_image,
    "iptables": iptables_image,
    "redis": redis_image,
    "guestbook-frontend": guestbook_frontend_image,
    "guestbook-frontend-v2": lambda: guestbook_frontend_image("v2"),
}
REFS = {
    "busybox": "gitkube/busybox:latest",
    "pause": "gitkube/pause:3",
    "haproxy": HAPROXY_IMAGE,
    "dnsmasq": DNSMASQ_IMAGE,
    "iptables": IPTABLES_IMAGE,
    "redis": REDIS_IMAGE,
    "guestbook-frontend": FRONTEND_IMAGE,
    "guestbook-frontend-v2": FRONTEND_V2_IMAGE,
}
SYSTEM_IMAGES = ("haproxy", "dnsmasq", "iptables")  # what every node needs for Services (either proxy mode)


def builtin_name(ref_or_name: str) -> str | None:
    """The builder name for `haproxy` or `gitkube/haproxy:2` (None when it is not one of the project's images)."""
    if ref_or_name in BUILDERS:
        return ref_or_name
    for name, ref in REFS.items():
        if ref == ref_or_name or ref.split(":")[0] == ref_or_name:
            return name
    return None


_cache: dict[str, ImageArchive] = {}


def build(name: str) -> ImageArchive:
    """One project image by builder name, built once per process."""
    if name not in _cache:
        _cache[name] = BUILDERS[name]()
    return _cache[name]
