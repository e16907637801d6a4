//! One's-complement sums (RFC 1071) of fixed-size fields, as straight-line code.

/// Fold a 32-bit sum of 16-bit words into 16 bits (not complemented).
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Sum of the two words of an IPv4 address.
#[inline(always)]
pub fn words4(a: &[u8; 4]) -> u32 {
    u32::from(u16::from_be_bytes([a[0], a[1]])) + u32::from(u16::from_be_bytes([a[2], a[3]]))
}

/// Sum of the eight words of an IPv6 address.
#[inline(always)]
pub fn words16(a: &[u8; 16]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 16 {
        sum += u32::from(u16::from_be_bytes([a[i], a[i + 1]]));
        i += 2;
    }
    sum
}
