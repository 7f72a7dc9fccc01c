#!/usr/bin/env bash
# Installs what the NAT harness (test/nat) needs when it is missing: iproute2 (ip netns, veth,
# bridges), iptables (the routers' MASQUERADE), nftables and miniupnpd (the UPnP router of scenario
# 3; Debian's miniupnpd-nftables backend) and curl (each node's gateway is reached inside its
# namespace). Idempotent: does nothing when they are there. miniupnpd is never started as a
# service here: the test runs it inside a router namespace it creates and deletes.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v miniupnpd >/dev/null 2>&1 || [ -x /usr/sbin/miniupnpd ] || missing+=(miniupnpd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# the package asks for its external interface in a debconf prompt and may try to start the daemon: neither applies here
$SUDO apt-get install -y -qq -o Dpkg::Options::=--force-confdef "${missing[@]}" >/dev/null
# do not leave a miniupnpd service running on the machine (no-op where there is no init system)
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now miniupnpd >/dev/null 2>&1 || true; fi
echo "installed for the NAT harness: ${missing[*]}"
