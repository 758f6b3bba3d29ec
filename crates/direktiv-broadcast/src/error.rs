//! The error type for building a [`Sink`](crate::Sink) and the endpoint URLs.
//!
//! Sending never returns this type: every send ends in a classified
//! [`Outcome`](crate::Outcome). These errors happen once, at start-up, and
//! their messages say what to fix. None of them ever contains the token.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while building a [`Sink`](crate::Sink) or an endpoint URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The extra CA bundle could not be read from disk.
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFileRead {
        /// The configured path.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },

    /// The extra CA bundle was read but holds no usable PEM certificate.
    #[error("the CA file {} is not a PEM certificate bundle: {reason}", path.display())]
    CaFileInvalid {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },

    /// The token cannot be sent in an HTTP header (it holds a control
    /// character or a non-visible byte such as a newline). The token itself
    /// is never part of the message.
    #[error(
        "the Direktiv token cannot be sent in the {header} header: it contains characters not allowed in HTTP header values"
    )]
    InvalidToken {
        /// The header the token was meant for.
        header: String,
    },

    /// An authentication header name given as text is not a valid HTTP header name.
    #[error("{name:?} is not a valid HTTP header name")]
    InvalidHeaderName {
        /// The rejected name.
        name: String,
    },

    /// The endpoint or base URL does not use `http` or `https`.
    #[error("the Direktiv URL {url} must use http or https, not {scheme}")]
    UnsupportedScheme {
        /// The URL, with any password removed.
        url: String,
        /// The scheme it used.
        scheme: String,
    },

    /// The namespace is empty or is `.` or `..`, which cannot be a path segment.
    #[error("{namespace:?} is not a usable Direktiv namespace name")]
    InvalidNamespace {
        /// The rejected namespace.
        namespace: String,
    },

    /// The HTTP client could not be built, for example because the system
    /// has no CA certificates and no CA file was given.
    #[error("cannot build the HTTP client for Direktiv: {0}")]
    Client(#[source] reqwest::Error),
}
