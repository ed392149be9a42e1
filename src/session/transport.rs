//! The byte channel the control protocol runs over: a Unix socket (mode
//! 0600 in the private state directory, peers checked by uid) on Unix; on
//! Windows a named pipe `\\.\pipe\wimfs-<SID>-<name>` whose DACL admits
//! only the user and Administrators, the peer checked at both ends
//! from the kernel's record of its pid and that process's token (the
//! SO_PEERCRED rule: the mounting user, or an administrator as root). Only
//! this file knows which.

use crate::sys::PrivateDir;
use std::io::{self, Read, Write};
use std::path::Path;

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    /// A daemon's listening end.
    pub struct Listener(UnixListener);

    /// One connection, either end.
    pub struct Conn(UnixStream);

    impl Listener {
        /// Where a listener bound as `name` in `dir` is reached (what the
        /// mount's record names).
        pub fn address(dir: &PrivateDir, name: &str) -> io::Result<std::path::PathBuf> {
            Ok(dir.join(name))
        }

        /// Listen as `name` inside the private directory `dir`: only this
        /// user (and root) can even connect (the server checks each peer
        /// as well).
        pub fn bind(dir: &PrivateDir, name: &str) -> io::Result<Listener> {
            crate::sys::bind_private_socket(dir, name).map(Listener)
        }

        /// Connections as they come.
        pub fn incoming(&self) -> impl Iterator<Item = io::Result<Conn>> + '_ {
            self.0.incoming().map(|c| c.map(Conn))
        }
    }

    impl Conn {
        pub fn connect(path: &Path) -> io::Result<Conn> {
            UnixStream::connect(path).map(Conn)
        }

        /// The uid of the process at the other end, as the kernel recorded
        /// it (cannot be forged by what the peer sends).
        pub fn peer_uid(&self) -> io::Result<u32> {
            crate::sys::peer_uid(&self.0)
        }

        pub fn try_clone(&self) -> io::Result<Conn> {
            self.0.try_clone().map(Conn)
        }
    }

    impl Read for Conn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Conn {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use std::fs::File;
    use std::path::PathBuf;

    /// A daemon's listening end: the pipe's name and the instance the next
    /// client will connect to. One instance always waits, created before
    /// the previous one is handed out, so the name never lapses (a lapsed
    /// name could be created afresh by someone else).
    pub struct Listener {
        path: PathBuf,
        pending: parking_lot::Mutex<Option<File>>,
    }

    /// One connection, either end (`server`: the daemon's).
    pub struct Conn {
        f: File,
        server: bool,
    }

    impl Listener {
        /// The pipe a listener bound as `name` is reached at (`dir` plays
        /// no part: pipes live in their own namespace).
        pub fn address(_dir: &PrivateDir, name: &str) -> io::Result<PathBuf> {
            crate::sys::pipe_path(name)
        }

        /// Create the pipe's first instance (failing if the name is
        /// taken: a squatter is never served or trusted).
        pub fn bind(dir: &PrivateDir, name: &str) -> io::Result<Listener> {
            let path = Self::address(dir, name)?;
            let first = crate::sys::pipe_create(&path, true)?;
            Ok(Listener {
                path,
                pending: parking_lot::Mutex::new(Some(first)),
            })
        }

        /// Connections as they come.
        pub fn incoming(&self) -> impl Iterator<Item = io::Result<Conn>> + '_ {
            std::iter::from_fn(move || {
                // An error (no instance could be made) is not retried at
                // full speed.
                Some(
                    self.accept()
                        .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(100))),
                )
            })
        }

        fn accept(&self) -> io::Result<Conn> {
            let mut slot = self.pending.lock();
            let inst = match slot.take() {
                Some(f) => f,
                None => crate::sys::pipe_create(&self.path, false)?,
            };
            crate::sys::pipe_accept(&inst)?;
            *slot = crate::sys::pipe_create(&self.path, false).ok();
            Ok(Conn {
                f: inst,
                server: true,
            })
        }
    }

    impl Conn {
        pub fn connect(path: &Path) -> io::Result<Conn> {
            crate::sys::pipe_connect(path).map(|f| Conn { f, server: false })
        }

        /// 0 if the process at the other end is this user (or an elevated
        /// administrator), as the kernel recorded its pid; an error naming
        /// it otherwise.
        pub fn peer_uid(&self) -> io::Result<u32> {
            crate::sys::peer_uid(&self.f, self.server)
        }

        pub fn try_clone(&self) -> io::Result<Conn> {
            Ok(Conn {
                f: self.f.try_clone()?,
                server: self.server,
            })
        }
    }

    impl Drop for Conn {
        /// A server end waits until the client has read the reply
        /// (FlushFileBuffers): closing a pipe drops what is unread.
        fn drop(&mut self) {
            if self.server {
                let _ = self.f.sync_all();
            }
        }
    }

    impl Read for Conn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.f.read(buf)
        }
    }

    impl Write for Conn {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.f.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.f.flush()
        }
    }
}

pub use imp::{Conn, Listener};
