//! The control protocol of a read-write mount: one JSON request line and
//! one JSON reply line per connection, over [`super::transport`].
//!
//! - `{"op":"commit","check":B,"force":B,"new_image":B}`: commit now and
//!   stay mounted; the reply carries the [`CommitReport`].
//! - `{"op":"exit","action":"commit"|"discard",...}`: the client is about
//!   to unmount. `commit` commits first (as above); `discard` marks the
//!   staging to be deleted when the session ends.
//! - `{"op":"cancel"}`: the unmount failed; forget a pending discard.
//! - `{"op":"status"}`: open handles, the staging directory and whether
//!   anything changed since the mount or the last commit.
//! - `{"op":"unmount"}`: end the mount now (after `exit`), for platforms
//!   where only the daemon can (WinFsp); the session then ends as after
//!   any unmount.
//!
//! Both ends check the other: the daemon serves only the uid that mounted
//! and root; the client talks only to a daemon running as itself or root,
//! so a planted socket cannot fake a "committed".

use super::adapter::Unmount;
use super::error::{error_text, Result, SessionError};
use super::transport::{Conn, Listener};
use crate::commit::{CommitReport, WimLock};
use crate::vfs::Vfs;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub check: bool,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub new_image: bool,
}

impl Request {
    /// Commit now and stay mounted.
    pub fn commit(check: bool, force: bool, new_image: bool) -> Request {
        Request {
            op: "commit".into(),
            check,
            force,
            new_image,
            ..Request::default()
        }
    }

    /// About to unmount: commit first (`commit`) or discard at the end.
    pub fn exit(commit: bool, check: bool, force: bool, new_image: bool) -> Request {
        Request {
            op: "exit".into(),
            action: Some(if commit { "commit" } else { "discard" }.into()),
            check,
            force,
            new_image,
        }
    }

    /// End the mount (after [`Request::exit`]).
    pub fn unmount() -> Request {
        Request {
            op: "unmount".into(),
            ..Request::default()
        }
    }

    /// Open handles, the staging, whether anything changed.
    pub fn status() -> Request {
        Request {
            op: "status".into(),
            ..Request::default()
        }
    }

    /// The unmount failed: forget a pending discard.
    pub fn cancel() -> Request {
        Request {
            op: "cancel".into(),
            ..Request::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub report: Option<CommitReport>,
    #[serde(default)]
    pub open_files: usize,
    #[serde(default)]
    pub staging: Option<String>,
    /// Nothing changed since the mount or the last commit (a daemon that
    /// does not say is taken to have changes).
    #[serde(default)]
    pub unchanged: bool,
}

impl Reply {
    /// The reply if the daemon did what was asked, its reason (or
    /// `default`) as [`SessionError::Refused`] otherwise.
    pub fn accepted(self, default: &str) -> Result<Reply> {
        if self.ok {
            Ok(self)
        } else {
            Err(SessionError::Refused(
                self.error.unwrap_or_else(|| default.into()),
            ))
        }
    }
}

/// What the daemon's control thread shares with the session.
pub struct Control {
    pub vfs: Arc<Vfs>,
    pub lock: WimLock,
    pub index: parking_lot::Mutex<u32>,
    pub staging: PathBuf,
    /// Delete the staging when the session ends (unmount --discard).
    pub discard_at_exit: AtomicBool,
    /// The mount's record in the registry, once written.
    pub record: parking_lot::Mutex<Option<PathBuf>>,
    /// The uid that mounted: with root, the only one whose requests are
    /// served.
    pub owner: u32,
    /// Ends the mount (`{"op":"unmount"}`), once mounted: where no other
    /// process can unmount it (a WinFsp volume belongs to its process),
    /// `wimfs unmount` asks the daemon.
    pub unmounter: parking_lot::Mutex<Option<Arc<dyn Unmount>>>,
}

impl Control {
    fn handle(&self, req: &Request) -> Reply {
        let fail = |e: &SessionError| Reply {
            ok: false,
            error: Some(error_text(e)),
            ..Reply::default()
        };
        let status = |report| Reply {
            ok: true,
            report,
            open_files: self.vfs.open_handles(),
            staging: Some(self.staging.display().to_string()),
            unchanged: self.vfs.is_unchanged(),
            ..Reply::default()
        };
        match (req.op.as_str(), req.action.as_deref()) {
            ("commit", _) | ("exit", Some("commit")) => {
                match self.commit(req.check, req.force, req.new_image) {
                    Ok(r) => status(Some(r)),
                    Err(e) => fail(&e),
                }
            }
            ("exit", Some("discard")) => {
                self.discard_at_exit.store(true, Ordering::SeqCst);
                status(None)
            }
            ("cancel", _) => {
                self.discard_at_exit.store(false, Ordering::SeqCst);
                status(None)
            }
            ("status", _) => status(None),
            ("unmount", _) => {
                let u = self.unmounter.lock().clone();
                match u.map(|u| u.unmount()) {
                    Some(Ok(_)) => status(None),
                    Some(Err(e)) => fail(&SessionError::Unmount {
                        dir: PathBuf::new(),
                        message: format!("cannot unmount: {e}"),
                    }),
                    None => fail(&SessionError::Invalid("not mounted yet".into())),
                }
            }
            (op, _) => fail(&SessionError::Invalid(format!("unknown request {op:?}"))),
        }
    }

    /// Serve control requests on `listener` (for the daemon's life).
    pub fn serve(self: Arc<Self>, listener: Listener) {
        let owner = self.owner;
        serve_requests(listener, owner, Arc::new(move |r: &Request| self.handle(r)));
    }
}

/// Serve requests on `listener` for the daemon's life, one thread per
/// connection, answering each with `handle` once its peer passed
/// [`peer_allowed`].
fn serve_requests(
    listener: Listener,
    owner: u32,
    handle: Arc<dyn Fn(&Request) -> Reply + Send + Sync>,
) {
    let spawned = std::thread::Builder::new()
        .name("wimfs-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handle.clone();
                let _ = std::thread::Builder::new()
                    .name("wimfs-control-conn".into())
                    .spawn(move || connection(conn, owner, &*h));
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the control thread: {e}");
    }
}

/// The control channel of a mount with nothing to commit (read-only) on a
/// platform where only the daemon can unmount (WinFsp): `unmount` and
/// `status`, with the same peer checks.
pub fn serve_unmount_only(listener: Listener, owner: u32, unmounter: Arc<dyn Unmount>) {
    serve_requests(
        listener,
        owner,
        Arc::new(move |req: &Request| match req.op.as_str() {
            "unmount" => match unmounter.unmount() {
                Ok(_) => Reply {
                    ok: true,
                    ..Reply::default()
                },
                Err(e) => Reply {
                    ok: false,
                    error: Some(format!("cannot unmount: {e}")),
                    ..Reply::default()
                },
            },
            "status" => Reply {
                ok: true,
                ..Reply::default()
            },
            op => Reply {
                ok: false,
                error: Some(format!(
                    "{op:?} is not possible on a read-only mount (nothing to commit)"
                )),
                ..Reply::default()
            },
        }),
    );
}

/// May the process at the other end of `conn` control this mount? Only the
/// uid that mounted (`owner`) and root: the socket's mode already keeps
/// others out, this holds even if the socket or its directory were opened
/// up.
fn peer_allowed(conn: &Conn, owner: u32) -> std::result::Result<(), String> {
    match conn.peer_uid() {
        Ok(uid) if uid == owner || uid == 0 => Ok(()),
        Ok(uid) => Err(format!(
            "permission denied: uid {uid} may not control this mount (it belongs to uid {owner})"
        )),
        Err(e) => Err(format!("cannot check who is asking: {e}")),
    }
}

fn connection(conn: Conn, owner: u32, handle: &dyn Fn(&Request) -> Reply) {
    let mut line = String::new();
    let Ok(rd) = conn.try_clone() else { return };
    if BufReader::new(rd).read_line(&mut line).is_err() {
        return;
    }
    let reply = match peer_allowed(&conn, owner) {
        Err(why) => {
            log::warn!("control request refused: {why}");
            Reply {
                ok: false,
                error: Some(why),
                ..Reply::default()
            }
        }
        Ok(()) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(r) => handle(&r),
            Err(e) => Reply {
                ok: false,
                error: Some(format!("bad request: {e}")),
                ..Reply::default()
            },
        },
    };
    let mut w = conn;
    if let Ok(mut s) = serde_json::to_string(&reply) {
        s.push('\n');
        let _ = w.write_all(s.as_bytes());
    }
}

/// Send one request to a daemon's control socket and wait for the reply.
pub fn request(sock: &Path, req: &Request) -> Result<Reply> {
    let mut c = Conn::connect(sock).map_err(|e| SessionError::NotResponding {
        what: format!("cannot reach the mount daemon at {}", sock.display()),
        source: e.into(),
    })?;
    // The other way round too: only a daemon of this user's (or root's)
    // may answer, so a planted socket cannot fake a "committed" reply.
    let me = crate::sys::euid();
    match c.peer_uid() {
        Ok(uid) if uid == me || uid == 0 => {}
        Ok(uid) => {
            return Err(SessionError::PeerNotTrusted(format!(
                "the control socket {} is served by uid {uid}, not by you (uid {me}): refusing \
                 to talk to it",
                sock.display()
            )))
        }
        Err(e) => {
            return Err(SessionError::PeerNotTrusted(format!(
                "cannot check who serves {}: {e}",
                sock.display()
            )))
        }
    }
    let mut s = serde_json::to_string(req).map_err(|e| SessionError::failed("bad request", e))?;
    s.push('\n');
    c.write_all(s.as_bytes())
        .map_err(|e| SessionError::NotResponding {
            what: "cannot talk to the mount daemon".into(),
            source: e.into(),
        })?;
    let mut line = String::new();
    BufReader::new(c)
        .read_line(&mut line)
        .map_err(|e| SessionError::NotResponding {
            what: "no answer from the mount daemon".into(),
            source: e.into(),
        })?;
    if line.trim().is_empty() {
        return Err(SessionError::NoAnswer(
            "the mount daemon closed the connection without answering".into(),
        ));
    }
    serde_json::from_str(line.trim()).map_err(|e| SessionError::NotResponding {
        what: "bad answer from the mount daemon".into(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts and older clients speak this JSON: it must not drift.
    #[test]
    fn requests_keep_their_wire_form() {
        let j = |r: &Request| serde_json::to_value(r).unwrap();
        assert_eq!(
            j(&Request::commit(true, false, true)),
            serde_json::json!({"op":"commit","action":null,"check":true,"force":false,"new_image":true})
        );
        assert_eq!(
            j(&Request::exit(false, false, false, false))["action"],
            "discard"
        );
        assert_eq!(j(&Request::cancel())["op"], "cancel");
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r.op, "status");
        assert!(!r.check && r.action.is_none());
    }

    #[test]
    fn unmount_request_wire_form() {
        assert_eq!(
            serde_json::to_value(Request::unmount()).unwrap(),
            serde_json::json!({"op":"unmount","action":null,"check":false,"force":false,"new_image":false})
        );
    }

    #[test]
    fn a_refusal_carries_the_daemons_reason() {
        let r = Reply {
            ok: false,
            error: Some("2 file(s) are open".into()),
            ..Reply::default()
        };
        match r.accepted("commit failed") {
            Err(SessionError::Refused(m)) => assert_eq!(m, "2 file(s) are open"),
            other => panic!("{other:?}"),
        }
        match Reply::default().accepted("commit failed") {
            Err(SessionError::Refused(m)) => assert_eq!(m, "commit failed"),
            other => panic!("{other:?}"),
        }
        let ok = Reply {
            ok: true,
            ..Reply::default()
        };
        assert!(ok.accepted("x").is_ok());
    }
}
