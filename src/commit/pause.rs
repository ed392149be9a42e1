//! Test hook: stop a writing process at a named point of a commit or a
//! rebuild, so that fault tests can kill it exactly there instead of at a
//! random moment that may miss the window they claim to test.
//!
//! Set `WIMFS_TEST_PAUSE_AT` to a point name (`after-blobs`,
//! `before-header`, `after-header`, `rebuild-after-blobs`,
//! `rebuild-before-rename`). On reaching it the process appends the name
//! and a newline to the file named by `WIMFS_TEST_PAUSE_MARKER` (if set),
//! then sleeps [`PAUSE`] and carries on. Without the variable this costs
//! one `OnceLock` read per point. It is a test hook only: it changes no
//! data, only timing.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Name of the point to pause at.
pub const PAUSE_AT: &str = "WIMFS_TEST_PAUSE_AT";
/// File to which a reached point's name is appended.
pub const PAUSE_MARKER: &str = "WIMFS_TEST_PAUSE_MARKER";
/// How long a paused process sleeps: long enough for any test to kill it.
const PAUSE: Duration = Duration::from_secs(60);

struct Pause {
    point: String,
    marker: Option<PathBuf>,
}

static CONFIG: OnceLock<Option<Pause>> = OnceLock::new();

/// Pause here if the test hook names `point`.
pub(crate) fn point(point: &str) {
    let cfg = CONFIG.get_or_init(|| {
        let at = std::env::var(PAUSE_AT).ok().filter(|s| !s.is_empty())?;
        Some(Pause {
            point: at,
            marker: std::env::var_os(PAUSE_MARKER).map(PathBuf::from),
        })
    });
    let Some(p) = cfg else { return };
    if p.point != point {
        return;
    }
    log::warn!("test hook {PAUSE_AT}: pausing at {point}");
    if let Some(m) = &p.marker {
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m)
            .and_then(|mut f| {
                f.write_all(format!("{point}\n").as_bytes())?;
                f.sync_all()
            });
        if let Err(e) = r {
            log::warn!("test hook: cannot write {}: {e}", m.display());
        }
    }
    std::thread::sleep(PAUSE);
}
