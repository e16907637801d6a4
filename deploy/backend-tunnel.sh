#!/bin/sh
# Prepare a backend for fo's tunnel mode (mode = "tunnel"): the load balancer sends
# the client's packet inside IPIP / IP6IP6 (or GUE) to this backend's address; the
# backend takes the tunnel header off, finds the VIP on its loopback and answers the
# client directly. Either decapsulator works:
#
#   kernel  the kernel's own modules (most sites):
#             IPIP     modprobe ipip;        ip link set tunl0 up
#             IP6IP6   modprobe ip6_tunnel;  ip link set ip6tnl0 up
#             GUE      modprobe fou;         ip fou add port PORT gue
#                      (and ip -6 fou add port PORT gue for IPv6 outer headers),
#                      plus the IPIP / IP6IP6 device above for the inner packet
#           tunl0 / ip6tnl0 are the modules' catch-all devices: they take every
#           tunnel packet to a local address. Decapsulated packets arrive on them
#           with the client's source, so reverse-path filtering is turned off there.
#   fo      fo's own XDP program: fo-agent decap --interface IF [--gue-port PORT]
#           (pinned under /sys/fs/bpf/fo-decap: it survives restarts of anything but
#           the machine; run this script again at boot).
#
#   backend-tunnel.sh [--decap kernel|fo] [--interface IF] [--gue-port PORT] VIP [VIP ...]
#   backend-tunnel.sh --remove [--decap kernel|fo] [--interface IF] [--gue-port PORT] VIP [VIP ...]
#
# Defaults: --decap kernel, --gue-port 0 (IPIP / IP6IP6 only; the service's gue_port,
# 6080 unless set, for encap = "gue"), --interface: the interface of the default route
# (needed with --decap fo). With --decap fo, --xdp-mode native|generic and --bpf-dir DIR
# are passed to fo-agent decap, and $FO_AGENT names the fo-agent binary (default:
# fo-agent from PATH).
#
# MSS: the tunnel adds 20 bytes (IPIP), 40 (IP6IP6), 32 / 52 (GUE) to every packet
# from the client. fo answers a too-big packet with ICMP "fragmentation needed" / "packet
# too big", so TCP adapts; to avoid that first round trip, make the backend advertise a
# smaller MSS, e.g. for a 1500-byte path and IPIP:
#   iptables -t mangle -A OUTPUT -p tcp -s VIP --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1440
# or per route: ip route change default via GW advmss 1440
set -eu

usage() {
    echo "usage: $0 [--remove] [--decap kernel|fo] [--interface IF] [--gue-port PORT] [--xdp-mode MODE] [--bpf-dir DIR] VIP [VIP ...]" >&2
    exit 2
}
action=add
decap=kernel
iface=
gue_port=0
fo_opts=
agent=${FO_AGENT:-fo-agent}
while [ $# -gt 0 ]; do
    case "$1" in
        --remove) action=del; shift ;;
        --decap) [ $# -ge 2 ] || usage; decap=$2; shift 2 ;;
        --interface) [ $# -ge 2 ] || usage; iface=$2; shift 2 ;;
        --gue-port) [ $# -ge 2 ] || usage; gue_port=$2; shift 2 ;;
        --xdp-mode) [ $# -ge 2 ] || usage; fo_opts="$fo_opts --xdp-mode $2"; shift 2 ;;
        --bpf-dir) [ $# -ge 2 ] || usage; fo_opts="$fo_opts --bpf-dir $2"; shift 2 ;;
        --*) usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
case "$decap" in kernel|fo) ;; *) usage ;; esac
if [ -z "$iface" ]; then
    iface=$(ip route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
fi

v4=false; v6=false
for vip in "$@"; do
    case "$vip" in
        *:*) v6=true ;;
        *.*) v4=true ;;
        *) echo "not an IP address: $vip" >&2; exit 2 ;;
    esac
done

# The VIPs on lo, never answered for in ARP (as for DSR).
if [ "$action" = add ]; then
    sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
        net.ipv4.conf.lo.arp_ignore=1 net.ipv4.conf.lo.arp_announce=2 >/dev/null
fi
for vip in "$@"; do
    case "$vip" in *:*) prefix=128; extra=nodad ;; *) prefix=32; extra= ;; esac
    if [ "$action" = add ]; then
        if ! ip addr show dev lo | grep -q " $vip/$prefix "; then
            ip addr add "$vip/$prefix" dev lo $extra
        fi
        echo "holding $vip on lo for tunnel mode"
    else
        ip addr del "$vip/$prefix" dev lo 2>/dev/null || true
        echo "released $vip from lo"
    fi
done

if [ "$decap" = fo ]; then
    [ -n "$iface" ] || { echo "no --interface and no default route to take it from" >&2; exit 2; }
    # shellcheck disable=SC2086 # fo_opts is a list of options
    if [ "$action" = add ]; then
        "$agent" decap --interface "$iface" --gue-port "$gue_port" $fo_opts
    else
        "$agent" decap --interface "$iface" --detach $fo_opts
    fi
    exit 0
fi

# The kernel's decapsulation.
if [ "$action" = add ]; then
    if $v4; then
        modprobe ipip
        ip link set tunl0 up
        # The decapsulated packet comes in on tunl0 from the client's address, which
        # is not routed via tunl0: strict reverse-path filtering would drop it (the
        # effective value is the larger of "all" and the device's).
        sysctl -q -w net.ipv4.conf.tunl0.rp_filter=0 net.ipv4.conf.all.rp_filter=0 >/dev/null
        echo "kernel IPIP: tunl0 up"
    fi
    if $v6; then
        modprobe ip6_tunnel
        ip link set ip6tnl0 up
        echo "kernel IP6IP6: ip6tnl0 up"
    fi
    if [ "$gue_port" != 0 ]; then
        modprobe fou
        if $v4 && ! ip fou show 2>/dev/null | grep -q "port $gue_port gue"; then
            ip fou add port "$gue_port" gue
        fi
        if $v6 && ! ip -6 fou show 2>/dev/null | grep -q "port $gue_port gue"; then
            ip -6 fou add port "$gue_port" gue
        fi
        echo "kernel GUE: fou on port $gue_port"
    fi
else
    if [ "$gue_port" != 0 ]; then
        $v4 && ip fou del port "$gue_port" 2>/dev/null || true
        $v6 && ip -6 fou del port "$gue_port" 2>/dev/null || true
    fi
    echo "kernel tunnel devices left as they are (other tunnels may use them)"
fi
