//! The byte channel the control protocol runs over: a Unix socket (mode
//! 0600 in the private state directory, peers checked by uid) now; a named
//! pipe with a user-only ACL on Windows next. Only this file knows which.

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

#[cfg(not(unix))]
mod imp {
    use super::*;

    const NOT_YET: &str = "the control channel (a named pipe) is not yet supported on Windows";

    fn not_yet() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, NOT_YET)
    }

    /// A daemon's listening end (not yet on this platform).
    pub struct Listener(());

    /// One connection (not yet on this platform).
    pub struct Conn(());

    impl Listener {
        pub fn bind(_dir: &PrivateDir, _name: &str) -> io::Result<Listener> {
            Err(not_yet())
        }

        pub fn incoming(&self) -> impl Iterator<Item = io::Result<Conn>> + '_ {
            std::iter::empty()
        }
    }

    impl Conn {
        pub fn connect(_path: &Path) -> io::Result<Conn> {
            Err(not_yet())
        }

        pub fn peer_uid(&self) -> io::Result<u32> {
            Err(not_yet())
        }

        pub fn try_clone(&self) -> io::Result<Conn> {
            Err(not_yet())
        }
    }

    impl Read for Conn {
        fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
            Err(not_yet())
        }
    }

    impl Write for Conn {
        fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
            Err(not_yet())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(not_yet())
        }
    }
}

pub use imp::{Conn, Listener};
