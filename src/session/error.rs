//! What can go wrong in a mount's life, in variants callers branch on
//! (the CLI turns a refusal into "; still mounted", a foreign mount into a
//! pointer to the tool that owns it). Messages are the whole sentence the
//! user sees; a wrapped cause stays reachable as the source.

use std::path::PathBuf;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Nothing is mounted at the path.
    #[error("{} is not mounted", .0.display())]
    NotMounted(PathBuf),
    /// Something is mounted there, but not a wimfs mount (or none of this
    /// user's daemons recorded it).
    #[error("{message}")]
    NotAMount { dir: PathBuf, message: String },
    /// A mount of wimlib's (`wimlib-imagex mount`): its own tool must
    /// handle it.
    #[error("{message}")]
    MountedByWimlib { dir: PathBuf, message: String },
    /// A wimfs mount without a live daemon of this user's (another user's).
    #[error("{message}")]
    ForeignMount { dir: PathBuf, message: String },
    /// A read-only mount asked for something only a read-write one does.
    #[error(
        "{} is a read-only mount; nothing to commit (mount with --rw to make changes)",
        .0.display()
    )]
    ReadOnly(PathBuf),
    /// A read-write mount whose record names no control socket.
    #[error("{message}")]
    NoControlSocket { dir: PathBuf, message: String },
    /// The mount point cannot take a mount (missing, not a directory,
    /// busy, a dead FUSE mount).
    #[error("{0}")]
    MountPoint(String),
    /// The platform's filesystem driver is missing (no /dev/fuse).
    #[error("{0}")]
    Unavailable(String),
    /// The kernel (or the platform adapter) refused the mount.
    #[error("{0}")]
    MountFailed(String),
    /// The staging cannot be used (refused as not safely ours, or not
    /// resumable).
    #[error("{message}")]
    Staging { refused: bool, message: String },
    /// Files are open in the mount and the commit was not forced.
    #[error(
        "{0} file(s) are open in the mount; close them first, or pass --force to commit what \
         has been written so far"
    )]
    OpenFiles(usize),
    /// The commit was refused or went astray, and every change is kept.
    #[error("{0}")]
    ChangesKept(String),
    /// The daemon could not be reached, or did not answer sensibly.
    #[error("{what}")]
    NotResponding {
        what: String,
        #[source]
        source: Cause,
    },
    /// The daemon closed the connection without a word.
    #[error("{0}")]
    NoAnswer(String),
    /// The other end of the control channel is not someone to talk to
    /// (another user's socket), or could not be checked.
    #[error("{0}")]
    PeerNotTrusted(String),
    /// The daemon answered, refusing the request; the text is its reason.
    #[error("{0}")]
    Refused(String),
    /// The daemon reported an error before its mount was ready.
    #[error("{0}")]
    DaemonFailed(String),
    /// The daemon exited before saying it was ready.
    #[error("the mount daemon exited ({0}) before the mount was ready")]
    DaemonExited(String),
    /// The mount could not be taken down.
    #[error("{message}")]
    Unmount { dir: PathBuf, message: String },
    /// What was asked is not possible with these inputs.
    #[error("{0}")]
    Invalid(String),
    /// Not available on this platform (yet).
    #[error("{0}")]
    Unsupported(&'static str),
    /// An error of the layers below, as they said it.
    #[error(transparent)]
    Wim(#[from] crate::Error),
    /// An error of the vfs, as it said it.
    #[error(transparent)]
    Vfs(#[from] crate::vfs::VfsError),
    /// A step that failed: what was being done, and why.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: Cause,
    },
}

impl SessionError {
    /// `what` failed because of `source`.
    pub fn failed(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> SessionError {
        SessionError::Failed {
            what: what.into(),
            source: source.into(),
        }
    }
}

pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// An error and its causes as one line: each reason said once, and a path
/// already named not repeated by a cause (`cannot open /x/a.wim: I/O error:
/// ...`). The control channel sends a daemon's errors this way; the CLI
/// prints its own the same way.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(cause) = cur {
        cur = cause.source();
        let mut s = cause.to_string();
        let named: Vec<String> = out
            .split_whitespace()
            .map(|w| {
                w.trim_start_matches(['(', '"', '\''])
                    .trim_end_matches([':', ',', ';', ')', '"', '\''])
            })
            .filter(|w| w.len() > 1 && w.contains(['/', '\\', '.']))
            .map(str::to_string)
            .collect();
        for p in &named {
            s = s.replace(&format!(" on {p}:"), ":");
            s = s.replace(&format!(": {p}: "), ": ");
            if let Some(rest) = s.strip_prefix(&format!("{p}: ")) {
                s = rest.to_string();
            }
        }
        let s = s.trim();
        if s.is_empty() || out.contains(s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_cause_is_said_once_without_its_path_again() {
        let io = std::io::Error::from_raw_os_error(21);
        let e = SessionError::failed(
            "cannot open /x/a.wim",
            crate::Error::Io {
                path: "/x/a.wim".into(),
                err: io,
            },
        );
        assert_eq!(
            error_text(&e),
            "cannot open /x/a.wim: I/O error: Is a directory (os error 21)"
        );
        // A message that already holds its cause's text says it once.
        let io = std::io::Error::other("not yours");
        let e = SessionError::failed("cannot use the wimfs state directory /r: not yours", io);
        assert_eq!(
            error_text(&e),
            "cannot use the wimfs state directory /r: not yours"
        );
    }
}
