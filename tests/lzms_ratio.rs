//! LZMS compression ratio and speed against wimlib's own compressor, on
//! sample files named by `LZMS_SAMPLES` (colon-separated). Ignored by
//! default: it is a measurement (run with `--ignored --nocapture`), and it
//! checks that wimlib decodes every output byte-exact.

mod common;
use common::libwim;
use std::time::Instant;
use wimfs::codec::lzms;

#[test]
#[ignore]
fn lzms_ratio_against_wimlib() {
    if !libwim::available() {
        return;
    }
    let Ok(list) = std::env::var("LZMS_SAMPLES") else {
        common::skip("LZMS_SAMPLES not set: no sample to measure");
        return;
    };
    let theirs = std::env::var("LZMS_WIMLIB").map_or(true, |v| v != "0");
    for path in list.split(':') {
        let data = std::fs::read(path).expect("sample readable");
        let t = Instant::now();
        let ours = lzms::compress(&data).expect("compressible sample");
        let ours_s = t.elapsed().as_secs_f64();
        let back = libwim::decompress(libwim::LZMS, data.len(), &ours, data.len());
        assert!(
            back.as_deref() == Some(&data[..]),
            "{path}: wimlib decodes our output"
        );
        let (ws, wlen) = if theirs {
            let t = Instant::now();
            let w =
                libwim::compress(libwim::LZMS, data.len(), 0, &data).expect("wimlib compresses");
            (t.elapsed().as_secs_f64(), w.len())
        } else {
            (f64::NAN, 0)
        };
        println!(
            "{path}: {} bytes; ours {} in {ours_s:.2}s; wimlib {wlen} in {ws:.2}s; size {:.4} time {:.3}",
            data.len(),
            ours.len(),
            ours.len() as f64 / wlen as f64,
            ours_s / ws
        );
    }
}
