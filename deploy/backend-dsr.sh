#!/bin/sh
# Prepare a backend for fo's DSR mode: the backend answers clients directly from the
# VIP, so it holds the VIP on its loopback — and must never answer ARP for it, or it
# would steal the VIP from the load balancer.
#
#   backend-dsr.sh VIP [VIP ...]            hold the VIPs (idempotent)
#   backend-dsr.sh --remove VIP [VIP ...]   give them back
#
# arp_ignore=1: answer ARP only for addresses of the interface the request came in on
#   (the VIP is on lo, so requests on eth0 are ignored).
# arp_announce=2: never use the VIP as the source of this host's own ARP requests.
# IPv6 needs no equivalent: Linux answers Neighbor Solicitations only for addresses of
# the receiving interface.
set -eu

usage() { echo "usage: $0 [--remove] VIP [VIP ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
action=add
if [ "$1" = "--remove" ]; then action=del; shift; [ $# -ge 1 ] || usage; fi

if [ "$action" = add ]; then
    sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.lo.arp_ignore=1 net.ipv4.conf.lo.arp_announce=2 >/dev/null
fi

for vip in "$@"; do
    case "$vip" in
        *:*) prefix=128; extra=nodad ;;
        *.*) prefix=32; extra= ;;
        *) echo "not an IP address: $vip" >&2; exit 2 ;;
    esac
    if [ "$action" = add ]; then
        if ! ip addr show dev lo | grep -q " $vip/$prefix "; then
            ip addr add "$vip/$prefix" dev lo $extra
        fi
        echo "holding $vip on lo for DSR"
    else
        ip addr del "$vip/$prefix" dev lo 2>/dev/null || true
        echo "released $vip from lo"
    fi
done
