//! Rebuild (optimize/export): to come.
