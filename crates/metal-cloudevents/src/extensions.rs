//! The CloudEvent extension attributes the mapper sets, and the CloudEvents
//! naming rules they follow.

/// Extension: the organization's id.
pub const ORG_ID: &str = "orgid";
/// Extension: the organization's name.
pub const ORG_NAME: &str = "orgname";
/// Extension: the project's id.
pub const PROJECT_ID: &str = "projid";
/// Extension: the project's name.
pub const PROJECT_NAME: &str = "projname";
/// Extension: the device's id.
pub const DEVICE_ID: &str = "deviceid";
/// Extension: the device's hostname.
pub const HOSTNAME: &str = "hostname";

/// Every extension the mapper may set, in the order it documents them. Each
/// passes [`is_valid_extension_name`] (a test checks it).
pub const EXTENSION_NAMES: [&str; 6] = [
    ORG_ID,
    ORG_NAME,
    PROJECT_ID,
    PROJECT_NAME,
    DEVICE_ID,
    HOSTNAME,
];

/// The CloudEvents 1.0 context attribute names, in the order the structured
/// JSON puts them. No extension may take one of these, nor `data` or
/// `data_base64`.
pub(crate) const CONTEXT_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "type",
    "source",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];

/// Whether `name` may name a CloudEvents extension attribute: one to twenty
/// characters, each a lowercase ASCII letter or digit, and not `data` or a
/// core attribute's name (`id`, `type`, `source`, `time`, ...).
///
/// ```
/// use metal_cloudevents::is_valid_extension_name;
/// assert!(is_valid_extension_name("traceparent"));
/// assert!(!is_valid_extension_name("data"));
/// assert!(!is_valid_extension_name("orgName"));
/// assert!(!is_valid_extension_name("org_name"));
/// assert!(!is_valid_extension_name("averyveryverylongname"));
/// ```
pub fn is_valid_extension_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CONTEXT_ATTRIBUTES.contains(&name)
        && !matches!(name, "data" | "data_base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extension_the_mapper_sets_is_valid() {
        for name in EXTENSION_NAMES {
            assert!(is_valid_extension_name(name), "{name}");
        }
    }

    #[test]
    fn names_breaking_the_rules_are_refused() {
        for name in [
            "",
            "data",
            "id",
            "time",
            "Orgid",
            "org-id",
            "org id",
            "prjnäme",
            "a".repeat(21).as_str(),
        ] {
            assert!(!is_valid_extension_name(name), "{name:?}");
        }
        assert!(is_valid_extension_name(&"a".repeat(20)));
        assert!(is_valid_extension_name("x9"));
    }
}
