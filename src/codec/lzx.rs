//! Placeholder until the lzx codec lands.
use super::CodecError;
pub fn decompress(_input: &[u8], _output: &mut [u8]) -> Result<(), CodecError> {
    Err(CodecError::Unsupported("lzx not yet implemented"))
}
