//! Bulk reading of many blobs at once (verify, apply, export).
//!
//! Blobs are grouped by the resource unit that holds them: a normal resource
//! holds one blob, a solid run holds many. Units are processed in parallel
//! on the rayon pool, and inside a unit the chunks are decoded in parallel
//! windows, then handed in order to each blob's sink. Nothing here goes
//! through the chunk cache: a full pass would only evict what a mount needs.

use crate::error::{Error, Result, Section};
use crate::wim::resource::Resource;
use crate::wim::{Blob, BlobLoc, Sha1, SolidRun};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Receives one blob's bytes in order.
pub trait BlobSink: Send {
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Called once after the last byte (also for empty blobs).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Blobs of a solid run being fed: (start, end, blob, sink).
type Active<'a> = Vec<(u64, u64, Arc<Blob>, Box<dyn BlobSink + 'a>)>;

/// Most decoded bytes a unit keeps in memory at once.
const WINDOW_BYTES: u64 = 128 << 20;

enum Unit {
    Whole(Arc<Blob>),
    Solid(Arc<SolidRun>, Vec<Arc<Blob>>),
}

impl Unit {
    fn sort_key(&self) -> (u16, u64) {
        match self {
            Unit::Whole(b) => match &b.loc {
                BlobLoc::Whole(r) => (r.part, r.reshdr.offset),
                BlobLoc::Solid { run, .. } => first_key(run),
            },
            Unit::Solid(run, _) => first_key(run),
        }
    }
}

fn first_key(run: &SolidRun) -> (u16, u64) {
    run.resources
        .first()
        .map_or((0, 0), |r| (r.part, r.reshdr.offset))
}

/// Stream every blob to the sink `make` gives it. Returns the failures, one
/// per blob, without stopping at the first.
pub fn for_each_blob<'a, F>(blobs: &[Arc<Blob>], make: F) -> Vec<(Sha1, Error)>
where
    F: Fn(&Arc<Blob>) -> Result<Box<dyn BlobSink + 'a>> + Sync,
{
    let mut solid: HashMap<*const SolidRun, (Arc<SolidRun>, Vec<Arc<Blob>>)> = HashMap::new();
    let mut units = Vec::new();
    for b in blobs {
        match &b.loc {
            BlobLoc::Whole(_) => units.push(Unit::Whole(b.clone())),
            BlobLoc::Solid { run, .. } => solid
                .entry(Arc::as_ptr(run))
                .or_insert_with(|| (run.clone(), Vec::new()))
                .1
                .push(b.clone()),
        }
    }
    units.extend(solid.into_values().map(|(r, v)| Unit::Solid(r, v)));
    units.sort_by_key(|u| u.sort_key());
    units
        .par_iter()
        .with_max_len(1)
        .flat_map_iter(|u| match u {
            Unit::Whole(b) => whole(b, &make)
                .err()
                .map(|e| (b.hash, e))
                .into_iter()
                .collect::<Vec<_>>(),
            Unit::Solid(run, blobs) => solid_run(run, blobs, &make),
        })
        .collect()
}

fn decode_window(res: &Resource, c: u64, end: u64) -> Vec<Result<Vec<u8>>> {
    if end > c {
        (c..=end)
            .into_par_iter()
            .map(|i| res.read_chunk(i))
            .collect()
    } else {
        vec![res.read_chunk(c)]
    }
}

/// Consumers of decoded chunks run on the rayon pool too, so they must be
/// `Send`.
type ChunkFn<'f> = dyn FnMut(u64, &[u8]) -> Result<()> + Send + 'f;

/// Decode chunks `first..=last` of `res` in parallel windows, calling `f`
/// with each chunk in order. While `f` consumes one window (writing files,
/// hashing), the next one is already being decoded: `rayon::join` keeps
/// both on the pool, so a worker waiting here still helps with the decode
/// (a plain thread blocked in `join` could starve the pool and deadlock).
fn chunks_in_order(res: &Resource, first: u64, last: u64, f: &mut ChunkFn<'_>) -> Result<()> {
    let per_window = (WINDOW_BYTES / res.chunk_size as u64)
        .max(2)
        .min(rayon::current_num_threads() as u64 * 4);
    if last < first {
        return Ok(());
    }
    let window_end = |c: u64| (c + per_window - 1).min(last);
    let consume = |f: &mut ChunkFn<'_>, c: u64, w: Vec<Result<Vec<u8>>>| -> Result<()> {
        for (k, d) in w.into_iter().enumerate() {
            f(c + k as u64, &d?)?;
        }
        Ok(())
    };
    let mut c = first;
    let mut cur = decode_window(res, c, window_end(c));
    // Huge (solid) chunks: overlapping would hold two windows of them at
    // once; memory matters more there than the little time consuming takes.
    let overlap = res.chunk_size < (8 << 20);
    loop {
        let end = window_end(c);
        if end >= last {
            return consume(f, c, cur);
        }
        if !overlap {
            consume(&mut *f, c, cur)?;
            c = end + 1;
            cur = decode_window(res, c, window_end(c));
            continue;
        }
        let n = end + 1;
        let (next, r) = rayon::join(
            || decode_window(res, n, window_end(n)),
            || consume(&mut *f, c, cur),
        );
        r?;
        cur = next;
        c = n;
    }
}

fn whole<'a, F>(b: &Arc<Blob>, make: &F) -> Result<()>
where
    F: Fn(&Arc<Blob>) -> Result<Box<dyn BlobSink + 'a>> + Sync,
{
    let BlobLoc::Whole(res) = &b.loc else {
        return Err(Error::Internal("not a whole blob".into()));
    };
    let mut sink = make(b)?;
    if b.size > 0 {
        if res.is_raw() {
            let mut buf = vec![0u8; (1 << 20).min(b.size as usize)];
            let mut p = 0u64;
            while p < b.size {
                let n = ((b.size - p) as usize).min(buf.len());
                res.source
                    .read_exact_at(&mut buf[..n], res.reshdr.offset + p)?;
                sink.write(&buf[..n])?;
                p += n as u64;
            }
        } else {
            let last = res.num_chunks().saturating_sub(1);
            chunks_in_order(res, 0, last, &mut |_, d| sink.write(d))?;
        }
    }
    sink.finish()
}

fn solid_run<'a, F>(run: &SolidRun, blobs: &[Arc<Blob>], make: &F) -> Vec<(Sha1, Error)>
where
    F: Fn(&Arc<Blob>) -> Result<Box<dyn BlobSink + 'a>> + Sync,
{
    let mut errors = Vec::new();
    let mut order: Vec<(u64, Arc<Blob>)> = blobs
        .iter()
        .filter_map(|b| match &b.loc {
            BlobLoc::Solid { offset, .. } => Some((*offset, b.clone())),
            _ => None,
        })
        .collect();
    order.sort_by_key(|(o, _)| *o);
    // Active blobs: (start, end, sink). Blobs start in order of offset.
    let mut active: Active<'a> = Vec::new();
    let mut next = 0usize;
    let mut start_blobs = |upto: u64, active: &mut Active<'a>, errors: &mut Vec<(Sha1, Error)>| {
        while next < order.len() && order[next].0 < upto {
            let (o, b) = &order[next];
            match make(b) {
                Ok(s) => active.push((*o, o + b.size, b.clone(), s)),
                Err(e) => errors.push((b.hash, e)),
            }
            next += 1;
        }
    };
    for (ri, res) in run.resources.iter().enumerate() {
        let rstart = run.starts[ri];
        let last = res.num_chunks().saturating_sub(1);
        if res.num_chunks() == 0 {
            continue;
        }
        let cs = res.chunk_size as u64;
        let r = chunks_in_order(res, 0, last, &mut |ci, data| {
            let cstart = rstart + ci * cs;
            let cend = cstart + data.len() as u64;
            start_blobs(cend, &mut active, &mut errors);
            let mut i = 0;
            while i < active.len() {
                let (s, e) = (active[i].0, active[i].1);
                let a = s.max(cstart);
                let z = e.min(cend);
                if a < z {
                    let piece = &data[(a - cstart) as usize..(z - cstart) as usize];
                    if let Err(err) = active[i].3.write(piece) {
                        let (_, _, b, _) = active.swap_remove(i);
                        errors.push((b.hash, err));
                        continue;
                    }
                }
                if e <= cend {
                    let (_, _, b, sink) = active.swap_remove(i);
                    if let Err(err) = sink.finish() {
                        errors.push((b.hash, err));
                    }
                    continue;
                }
                i += 1;
            }
            Ok(())
        });
        if let Err(e) = r {
            // Everything not finished in this run fails with the decode error.
            let e = Arc::new(e);
            for (_, _, b, _) in active.drain(..) {
                errors.push((b.hash, Error::Shared(e.clone())));
            }
            start_blobs(u64::MAX, &mut active, &mut errors);
            for (_, _, b, _) in active.drain(..) {
                errors.push((b.hash, Error::Shared(e.clone())));
            }
            return errors;
        }
    }
    // Zero-length blobs at the very end, and anything the run did not cover.
    start_blobs(u64::MAX, &mut active, &mut errors);
    for (s, e, b, sink) in active.drain(..) {
        if s == e {
            if let Err(err) = sink.finish() {
                errors.push((b.hash, err));
            }
        } else {
            errors.push((
                b.hash,
                Error::corrupt(
                    Section::Resource,
                    None,
                    "solid resource ended before the blob",
                ),
            ));
        }
    }
    errors
}
