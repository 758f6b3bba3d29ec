//! Property tests of the loader: whatever the file holds, it gives
//! `Settings` or a list of problems, never a panic.

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

/// A YAML-ish document: scalars in their YAML text form, mappings and
/// sequences, rendered in block style.
#[derive(Debug, Clone)]
enum Doc {
    Scalar(String),
    Map(Vec<(String, Doc)>),
    Seq(Vec<Doc>),
}

impl Doc {
    fn render(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Doc::Scalar(text) => {
                out.push_str(text);
                out.push('\n');
            }
            Doc::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
            Doc::Seq(items) if items.is_empty() => out.push_str("[]\n"),
            Doc::Map(entries) => {
                for (key, value) in entries {
                    out.push_str(&format!("{pad}{key}:"));
                    value.render_nested(indent, out);
                }
            }
            Doc::Seq(items) => {
                for item in items {
                    out.push_str(&format!("{pad}-"));
                    item.render_nested(indent, out);
                }
            }
        }
    }

    /// After `key:` or `-`: a scalar on the same line, a block below.
    fn render_nested(&self, indent: usize, out: &mut String) {
        match self {
            Doc::Map(e) if !e.is_empty() => {
                out.push('\n');
                self.render(indent + 2, out);
            }
            Doc::Seq(i) if !i.is_empty() => {
                out.push('\n');
                self.render(indent + 2, out);
            }
            _ => {
                out.push(' ');
                self.render(indent, out);
            }
        }
    }
}

/// Key names near the real ones: every section and key, each also
/// with one character inserted, and random names.
fn key() -> impl Strategy<Value = String> {
    let mut real: Vec<String> = all_keys()
        .iter()
        .flat_map(|k| k.split('.').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    real.sort();
    real.dedup();
    prop_oneof![
        6 => prop::sample::select(real.clone()),
        1 => (prop::sample::select(real), any::<Index>(), "[ -~]").prop_map(
            |(key, at, c)| {
                let at = at.index(key.len() + 1);
                format!("{}{c}{}", &key[..at], &key[at..])
            }
        ),
        1 => "[a-zA-Z_ -]{0,12}",
    ]
}

/// Scalars as YAML writes them, biased towards what the keys take,
/// with some YAML oddities (tags, anchors, aliases, block text).
fn scalar() -> impl Strategy<Value = String> {
    let plain = prop_oneof![
        Just("~".to_owned()),
        Just("null".to_owned()),
        Just("yes".to_owned()),
        Just("false".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("340282366920938463463374607431768211456".to_owned()),
        Just("-170141183460469231731687303715884105729".to_owned()),
        any::<f64>().prop_map(|f| f.to_string()),
        Just(".nan".to_owned()),
        Just("-.inf".to_owned()),
        "[+-]?[0-9]{1,22}(ms|s|m|h|d|us)?([0-9]{1,3}(ms|s|m|h))?",
        "(https?|ftp|file)://([a-z]{1,5}(:[a-z]{0,5})?@)?[a-z0-9.:\\[\\]-]{0,20}(/[a-z%]{0,8}){0,3}",
        "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[0-9.:\\[\\]a-f]{0,20}",
        "\"[^\"\\\\]{0,16}\"",
        "'[^']{0,16}'",
        "[a-zA-Z0-9][a-zA-Z0-9 ./,<>-]{0,20}",
        Just("[project, device, organization]".to_owned()),
    ];
    let odd = prop_oneof![
        Just("{a: 1, b: [2]}".to_owned()),
        Just("!!binary aGVsbG8=".to_owned()),
        Just("&anchor value".to_owned()),
        Just("*anchor".to_owned()),
        Just("|\n  a block\n  of text".to_owned()),
        ".{0,12}",
    ];
    prop_oneof![6 => plain, 1 => odd]
}

fn doc() -> impl Strategy<Value = Doc> {
    scalar()
        .prop_map(Doc::Scalar)
        .prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec((key(), inner.clone()), 0..8).prop_map(Doc::Map),
                prop::collection::vec(inner, 0..4).prop_map(Doc::Seq),
            ]
        })
}

/// A rendered document, sometimes with a few random bytes spliced in.
fn document() -> impl Strategy<Value = Vec<u8>> {
    let top = prop::collection::vec((key(), doc()), 0..7).prop_map(Doc::Map);
    let splice = prop::option::weighted(
        0.25,
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..6)),
    );
    (top, splice).prop_map(|(doc, splice)| {
        let mut text = String::new();
        doc.render(0, &mut text);
        let mut bytes = text.into_bytes();
        if let Some((at, junk)) = splice {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, junk);
        }
        bytes
    })
}

/// The minimal valid config with one line added to a section: near
/// enough to valid that both outcomes are common.
fn near_valid() -> impl Strategy<Value = Vec<u8>> {
    let sections = prop::sample::select(vec!["equinix", "direktiv"]);
    (sections, key(), scalar()).prop_map(|(section, key, value)| {
        minimal_with(section, &format!("{key}: {value}")).into_bytes()
    })
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match load_bytes(bytes, &no_env, Overrides::default()) {
        Ok(loaded) => {
            let e = &loaded.settings.equinix;
            prop_assert!((1..=1000).contains(&e.per_page));
            prop_assert!(e.concurrency >= 1 && !e.poll_interval.is_zero());
            prop_assert!(e.request_timeout <= e.sweep_timeout);
        }
        Err(problems) => {
            prop_assert!(!problems.is_empty());
            for problem in &problems {
                prop_assert!(!problem.to_string().trim().is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn yaml_ish_documents_load_or_list_problems(bytes in document()) {
        check(&bytes)?;
    }

    #[test]
    fn near_valid_documents_load_or_list_problems(bytes in near_valid()) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_load_or_list_problems(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        check(&bytes)?;
    }
}
