//! Windows (NT) rules that a WIM must respect to be usable on Windows,
//! kept apart from any WIM structure so every layer (the overlay's create
//! paths, `verify`) applies the same rules.

pub mod names;
pub mod security;
