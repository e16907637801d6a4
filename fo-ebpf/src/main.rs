//! fo's XDP program. One entry point, attached to the node's interface; every
//! decision comes from maps that the agent writes (see `maps.rs`).
//!
//! Fail open: whatever does not parse, is not for a VIP this node owns, or is not
//! a configured service goes to the kernel untouched (`XDP_PASS`), and the reason
//! is counted.
#![no_std]
#![no_main]

mod arp;
mod lb;
mod maps;
mod nat;
mod nd;
mod parse;
mod tunnel;

use aya_ebpf::{macros::xdp, programs::XdpContext};
use fo_common::{Counter, xdp_action::XDP_PASS};
use parse::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHdr, ptr_at};

#[xdp]
pub fn fo_xdp(ctx: XdpContext) -> u32 {
    let action = match try_fo_xdp(&ctx) {
        // The tunnel's work runs here, in a call chain of its own.
        Ok(pending) if pending & tunnel::PENDING != 0 => tunnel::finish(&ctx, pending),
        Ok(action) => action,
        Err(reason) => {
            maps::count(reason);
            XDP_PASS
        }
    };
    maps::count_action(action);
    action
}

fn try_fo_xdp(ctx: &XdpContext) -> Result<u32, Counter> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: `ptr_at` checked that the header lies inside the frame.
    let ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_ARP => arp::reply(ctx),
        ETH_P_IP => lb::ipv4(ctx),
        ETH_P_IPV6 => lb::ipv6(ctx),
        ETH_P_8021Q | ETH_P_8021AD => Err(Counter::PassVlan),
        _ => Err(Counter::PassNotIp),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
