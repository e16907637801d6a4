//! VRRP engine (placeholder docs, rewritten below).

pub mod packet;
pub mod types;
