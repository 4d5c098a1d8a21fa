//! The client side: accepting connections, TLS termination, the HTTP/1 fast path, and the body types of the request path.

pub mod body;
pub mod h1;
pub mod listener;
pub mod tls;
