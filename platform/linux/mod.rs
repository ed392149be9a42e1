//! FUSE adapter (fuser). Placeholder until the adapter lands.
