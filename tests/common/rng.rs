//! Deterministic test data without a dependency: one xorshift64*
//! generator (every test binary uses this one), English-like text and
//! x86-like code.

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// An index into something `n` long.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// English-like text (compressible, with long repeats).
pub fn text_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "image", "window", "file", "stream", "chunk", "of", "and", "to", "compress",
        "header", "table", "resource", "a", "is", "in", "data", "blob", "hash", "metadata",
    ];
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        v.push(if rng.below(13) == 0 { b'\n' } else { b' ' });
    }
    v.truncate(n);
    v
}

/// x86-like machine code: the head of this very test executable (an ELF
/// with real x86-64 code, which exercises LZX's E8 call translation), padded
/// with synthetic `call rel32` sequences when shorter than `n`.
pub fn x86_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    v.truncate(n);
    while v.len() < n {
        v.push(0xE8);
        v.extend_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
        v.extend_from_slice(&[0x48, 0x89, 0xC7, 0x90]);
    }
    v.truncate(n);
    v
}
