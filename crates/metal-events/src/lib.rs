//! A typed client for the Equinix Metal events API.
//!
//! (Crate documentation, the client and pagination come with issue 2; the
//! models in [`models`] are the shared vocabulary of the workspace.)

pub mod models;

pub use models::{
    Device, DeviceId, DeviceList, DeviceState, ErrorBody, Event, EventId, EventList, Href, Meta, Organization,
    OrganizationId, Project, ProjectId, ProjectList,
};
