//! BPF_MAP_LOOKUP_BATCH, which aya does not offer: reading a whole Maglev table back,
//! or walking a big hash map (the NAT table), takes a few syscalls instead of two per
//! entry.

use std::os::fd::{AsRawFd as _, BorrowedFd};

/// `bpf(2)` command number (uapi `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call.
const CHUNK: u32 = 8192;

/// The `batch` member of uapi `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// One BPF_MAP_LOOKUP_BATCH call on `map` for up to `count` entries into `keys` and
/// `values`, going on after `token` (`None`: from the map's start) and leaving the next
/// token in `out_token`. Returns how many entries it read (at most `count`), and
/// whether the end of the map came (ENOENT; what this call read is still valid).
///
/// # Safety
/// `keys` and `values` must hold `count` entries of the map's key and value sizes
/// (arrays and hash maps use `u32` tokens).
unsafe fn lookup_batch(
    map: BorrowedFd<'_>,
    token: Option<&u32>,
    out_token: &mut u32,
    keys: *mut u8,
    values: *mut u8,
    count: u32,
) -> std::io::Result<(u32, bool)> {
    let mut attr = BatchAttr {
        in_batch: token.map_or(0, |t| std::ptr::from_ref(t) as u64),
        out_batch: std::ptr::from_mut(out_token) as u64,
        keys: keys as u64,
        values: values as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: bpf(2) with an attr we own; the kernel writes within the buffers the
    // caller vouched for, and the tokens are borrowed `u32`s that live across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &raw mut attr,
            size_of::<BatchAttr>() as libc::c_uint,
        )
    };
    let read = attr.count.min(count);
    if rc >= 0 {
        return Ok((read, false));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        Ok((read, true))
    } else {
        Err(e)
    }
}

/// `map[start .. start + n]` of an array map with `u32` values.
pub(super) fn lookup_u32_array(
    map: BorrowedFd<'_>,
    start: u32,
    n: u32,
) -> std::io::Result<Vec<u32>> {
    let mut values = Vec::with_capacity(n as usize);
    let mut keys = vec![0u32; CHUNK as usize];
    let mut chunk = vec![0u32; CHUNK as usize];
    // The batch token of an array is the last key read; the next call starts after it.
    let mut token: u32 = start.wrapping_sub(1);
    let mut out_token: u32 = 0;
    while (values.len() as u32) < n {
        let want = (n - values.len() as u32).min(CHUNK);
        // No token before the first entry: start at key 0.
        let from = (!values.is_empty() || start != 0).then_some(&token);
        // SAFETY: the buffers hold CHUNK ≥ want keys and values of 4 bytes (the map's
        // key and value size).
        // The end of the map coming first is fine: what was read is valid.
        let (got, _) = unsafe {
            lookup_batch(
                map,
                from,
                &mut out_token,
                keys.as_mut_ptr().cast(),
                chunk.as_mut_ptr().cast(),
                want,
            )
        }?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "batch lookup stopped at entry {}",
                    start as u64 + values.len() as u64
                ),
            ));
        }
        let first = start.wrapping_add(values.len() as u32);
        if keys[..got as usize]
            .iter()
            .enumerate()
            .any(|(i, &k)| k != first.wrapping_add(i as u32))
        {
            return Err(std::io::Error::other(
                "batch lookup returned keys out of order",
            ));
        }
        values.extend_from_slice(&chunk[..got as usize]);
        token = out_token;
    }
    Ok(values)
}

/// Every entry of a hash map with keys `K` and values `V` (plain data of exactly the
/// map's key and value sizes, which the caller's typed handle has checked), handed to
/// `f` as read (a count over a million entries needs no 100 MB vector). On an error `f`
/// may have seen part of the map.
///
/// The batch token of a hash map is the bucket to go on from (a `u32`); a call fills
/// whole buckets only, so `CHUNK` must exceed the longest bucket (it does by far:
/// buckets hold a handful of entries). Entries added or removed during the walk may
/// be missed, as with one-by-one iteration.
pub(super) fn walk_hash<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    mut f: impl FnMut(K, V),
) -> std::io::Result<()> {
    let (ks, vs) = (size_of::<K>(), size_of::<V>());
    let mut keys = vec![0u8; CHUNK as usize * ks];
    let mut values = vec![0u8; CHUNK as usize * vs];
    let mut seen: usize = 0;
    let mut token: u32 = 0;
    let mut out_token: u32 = 0;
    let mut first = true;
    loop {
        // SAFETY: the buffers hold CHUNK keys and values of the map's sizes (= K's and
        // V's); the tokens are u32 bucket indexes.
        let (got, done) = unsafe {
            lookup_batch(
                map,
                (!first).then_some(&token),
                &mut out_token,
                keys.as_mut_ptr(),
                values.as_mut_ptr(),
                CHUNK,
            )
        }?;
        let got = got as usize;
        for i in 0..got {
            // SAFETY: entry i lies inside the buffers (i < CHUNK); K and V are plain
            // data, any bytes are a value of them; the reads need no alignment.
            let (k, v) = unsafe {
                (
                    std::ptr::read_unaligned(keys.as_ptr().add(i * ks).cast::<K>()),
                    std::ptr::read_unaligned(values.as_ptr().add(i * vs).cast::<V>()),
                )
            };
            f(k, v);
        }
        seen += got;
        if done {
            return Ok(());
        }
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("batch lookup made no progress after {seen} entries"),
            ));
        }
        token = out_token;
        first = false;
    }
}
