//! The HTTP/1.1 codec (RFC 9112), without I/O.

pub mod wire;
