//! Why an event could not become a CloudEvent.

use metal_events::EventId;

/// A `Result` whose error is [`MapError`].
pub type Result<T, E = MapError> = std::result::Result<T, E>;

/// Why [`to_cloudevent`](crate::to_cloudevent) refused an event or its options.
///
/// With options that pass [`MapOptions::validate`](crate::MapOptions::validate)
/// only [`MapError::MissingId`], [`MapError::MissingType`] and
/// [`MapError::InvalidAttribute`] can happen: the event itself is unusable, so
/// the caller logs it, counts it and moves on; retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The event has no `id` (absent, `null`, not a string, or empty). A
    /// CloudEvent needs one, and an invented id would defeat Direktiv's
    /// recognition of resends.
    #[error("the Metal event has no id (type {})", .event_type.as_deref().unwrap_or("unknown"))]
    MissingId {
        /// The event's type, when it has one, to help find it in logs.
        event_type: Option<String>,
    },
    /// The event has no `type` (absent, `null`, not a string, or empty); a
    /// CloudEvent needs one.
    #[error("Metal event {id} has no type")]
    MissingType {
        /// The event's id.
        id: EventId,
    },
    /// The event's `id` or `type` cannot be a CloudEvents string: it holds
    /// a control character (U+0000 to U+001F, U+007F to U+009F), which
    /// CloudEvents strings may not contain, or nothing but whitespace. It is
    /// not repaired: a changed id would name another event (Direktiv
    /// recognises resends by id) and a changed type would trigger other
    /// workflows.
    #[error(
        "the Metal event's {attribute} {value:?} cannot be a CloudEvent {attribute}: it holds a control character or only whitespace"
    )]
    InvalidAttribute {
        /// `id` or `type`.
        attribute: &'static str,
        /// The value as the event gave it, cut to 64 characters (`Display`
        /// shows it escaped).
        value: String,
    },
    /// [`MapOptions::type_prefix`](crate::MapOptions::type_prefix) holds a
    /// control character, so no type made with it would be valid.
    #[error("the type prefix {prefix:?} holds a control character")]
    InvalidTypePrefix {
        /// The prefix as configured.
        prefix: String,
    },
    /// [`MapOptions::source_prefix`](crate::MapOptions::source_prefix) would
    /// not give a valid URI-reference.
    #[error("the source prefix {prefix:?} is not usable: {reason}")]
    InvalidSourcePrefix {
        /// The prefix as configured.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// cloudevents-sdk refused the event. Cannot happen with valid options (the
    /// mapper always sets id, type and a non-empty source); kept so that a
    /// change in the SDK shows up as an error rather than a panic.
    #[error("cloudevents-sdk refused the event")]
    Sdk(#[source] cloudevents::event::EventBuilderError),
}
