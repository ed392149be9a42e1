//! Test oracle: wimlib's own chunk compressors and decompressors, loaded at
//! run time from `libwim.so.15` (Debian package `libwim15`, pulled in by
//! `wimtools`). Used only in tests, to check that our codecs decode what
//! wimlib encodes and that wimlib decodes what we encode.
#![allow(dead_code)]

use libloading::{Library, Symbol};
use std::ffi::c_void;
use std::sync::OnceLock;

pub const XPRESS: i32 = 1;
pub const LZX: i32 = 2;
pub const LZMS: i32 = 3;

type CreateCompressor = unsafe extern "C" fn(i32, usize, u32, *mut *mut c_void) -> i32;
type Compress =
    unsafe extern "C" fn(*const c_void, usize, *mut c_void, usize, *mut c_void) -> usize;
type FreeCompressor = unsafe extern "C" fn(*mut c_void);
type CreateDecompressor = unsafe extern "C" fn(i32, usize, *mut *mut c_void) -> i32;
type Decompress =
    unsafe extern "C" fn(*const c_void, usize, *mut c_void, usize, *mut c_void) -> i32;
type FreeDecompressor = unsafe extern "C" fn(*mut c_void);

fn lib() -> Option<&'static Library> {
    static LIB: OnceLock<Option<Library>> = OnceLock::new();
    let lib = LIB.get_or_init(|| {
        ["libwim.so.15", "/usr/lib/x86_64-linux-gnu/libwim.so.15"]
            .iter()
            .find_map(|p| unsafe { Library::new(p).ok() })
    });
    // Every test that asks and finds no library skips its oracle part:
    // each is named in the closing line (and fails under CI).
    if lib.is_none() {
        super::skip("libwim.so.15 not found (Debian package wimtools): the libwim oracle part of this test did not run");
    }
    lib.as_ref()
}

/// True when the oracle library is present.
pub fn available() -> bool {
    lib().is_some()
}

/// Compress one chunk (at most `max_block` bytes; XPRESS allows up to 64 KiB,
/// LZX up to 2 MiB) with wimlib. `None` if wimlib produced no output
/// smaller than the input (wimlib's convention: the chunk is stored raw).
pub fn compress(ctype: i32, max_block: usize, level: u32, data: &[u8]) -> Option<Vec<u8>> {
    let l = lib()?;
    unsafe {
        let create: Symbol<CreateCompressor> = l.get(b"wimlib_create_compressor").ok()?;
        let comp: Symbol<Compress> = l.get(b"wimlib_compress").ok()?;
        let free: Symbol<FreeCompressor> = l.get(b"wimlib_free_compressor").ok()?;
        let mut c: *mut c_void = std::ptr::null_mut();
        let r = create(ctype, max_block, level, &mut c);
        assert_eq!(r, 0, "wimlib_create_compressor failed: {r}");
        let mut out = vec![0u8; data.len().saturating_sub(1)];
        let n = if out.is_empty() {
            0
        } else {
            comp(
                data.as_ptr() as _,
                data.len(),
                out.as_mut_ptr() as _,
                out.len(),
                c,
            )
        };
        free(c);
        if n == 0 {
            None
        } else {
            out.truncate(n);
            Some(out)
        }
    }
}

/// Decompress one chunk with wimlib; `None` if wimlib reports an error.
pub fn decompress(ctype: i32, max_block: usize, data: &[u8], out_len: usize) -> Option<Vec<u8>> {
    let l = lib()?;
    unsafe {
        let create: Symbol<CreateDecompressor> = l.get(b"wimlib_create_decompressor").ok()?;
        let dec: Symbol<Decompress> = l.get(b"wimlib_decompress").ok()?;
        let free: Symbol<FreeDecompressor> = l.get(b"wimlib_free_decompressor").ok()?;
        let mut d: *mut c_void = std::ptr::null_mut();
        let r = create(ctype, max_block, &mut d);
        assert_eq!(r, 0, "wimlib_create_decompressor failed: {r}");
        let mut out = vec![0u8; out_len];
        let r = dec(
            data.as_ptr() as _,
            data.len(),
            out.as_mut_ptr() as _,
            out_len,
            d,
        );
        free(d);
        (r == 0).then_some(out)
    }
}
