#![no_std]
// Present so that `fo-agent` can name this crate as a build dependency (cache
// invalidation); the program itself is the `fo-xdp` binary.
