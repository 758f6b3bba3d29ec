//! A small iterative JSON scanner for pages serde_json cannot read whole: it
//! splits an object into its keys and raw values, and an array into its raw
//! elements, by structure alone (brackets, strings and their escapes), so a
//! bad byte or escape inside one event, or nesting of any depth, cannot hide
//! the events beside it. It never recurses and never validates what lies
//! inside a value: each piece is decoded on its own afterwards.

/// The raw text of one value, from its first byte to its last.
type Span<'a> = &'a str;

/// The pieces of an events page: the raw elements of its `events` array
/// (empty when `events` is `null` or absent) and the raw `meta` value.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SplitPage<'a> {
    pub(crate) events: Vec<Span<'a>>,
    pub(crate) meta: Option<Span<'a>>,
}

/// Splits a page `{"events": [...], "meta": ..., ...}`. `None` when the text
/// is not one object, when `events` is neither an array nor `null`, or when
/// `events` or `meta` is given twice (as serde would refuse it).
pub(crate) fn split_page(text: &str) -> Option<SplitPage<'_>> {
    let entries = split_object(text)?;
    let mut page = SplitPage::default();
    let (mut events_seen, mut meta_seen) = (false, false);
    for (key, value) in entries {
        match serde_json::from_str::<String>(key).ok().as_deref() {
            Some("events") => {
                if std::mem::replace(&mut events_seen, true) {
                    return None;
                }
                if value != "null" {
                    page.events = split_array(value)?;
                }
            }
            Some("meta") => {
                if std::mem::replace(&mut meta_seen, true) {
                    return None;
                }
                page.meta = Some(value);
            }
            _ => {}
        }
    }
    Some(page)
}

/// The top-level `key` of an object whose value is a JSON string, decoded
/// (the last one when repeated, as a JSON object reads). `None` when the
/// text is not an object, the key is absent or its value is not a string.
pub(crate) fn string_member(object: &str, key: &str) -> Option<String> {
    split_object(object)?
        .into_iter()
        .rev()
        .find(|(k, _)| serde_json::from_str::<String>(k).ok().as_deref() == Some(key))
        .and_then(|(_, value)| serde_json::from_str::<String>(value).ok())
}

/// The entries of the object that is the whole of `text` (surrounding
/// whitespace allowed): each key as its raw string token (quotes included)
/// and its raw value.
fn split_object(text: &str) -> Option<Vec<(Span<'_>, Span<'_>)>> {
    let bytes = text.as_bytes();
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(bytes, at + 1);
    let mut entries = Vec::new();
    if bytes.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if bytes.get(at) != Some(&b'"') {
                return None;
            }
            let key_end = string_end(bytes, at)?;
            let key = &text[at..key_end];
            at = skip_ws(bytes, key_end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at = skip_ws(bytes, at + 1);
            let value_end = value_end(bytes, at)?;
            entries.push((key, &text[at..value_end]));
            at = skip_ws(bytes, value_end);
            match bytes.get(at) {
                Some(b',') => at = skip_ws(bytes, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(bytes, at) == bytes.len()).then_some(entries)
}

/// The raw elements of the array that is the whole of `text`.
fn split_array(text: &str) -> Option<Vec<Span<'_>>> {
    let bytes = text.as_bytes();
    let mut at = skip_ws(bytes, 0);
    if bytes.get(at) != Some(&b'[') {
        return None;
    }
    at = skip_ws(bytes, at + 1);
    let mut elements = Vec::new();
    if bytes.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            let end = value_end(bytes, at)?;
            elements.push(&text[at..end]);
            at = skip_ws(bytes, end);
            match bytes.get(at) {
                Some(b',') => at = skip_ws(bytes, at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(bytes, at) == bytes.len()).then_some(elements)
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The index just past the string token starting at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The index just past the value starting at `start`: a string, an array or
/// object (brackets matched with a stack, never recursion), or a scalar
/// (everything up to the next delimiter, checked later by serde).
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'[' | b'{' => {
            let mut open = Vec::new();
            let mut at = start;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b @ (b'[' | b'{') => open.push(*b),
                    b']' if open.pop()? == b'[' => {}
                    b'}' if open.pop()? == b'{' => {}
                    b']' | b'}' => return None,
                    _ => {}
                }
                at += 1;
                if open.is_empty() {
                    return Some(at);
                }
            }
        }
        b',' | b']' | b'}' | b':' => None,
        _ => {
            let mut at = start;
            while bytes
                .get(at)
                .is_some_and(|b| !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                at += 1;
            }
            Some(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_page_into_its_events_and_meta() {
        let text = r#" {"x": {"events": 1}, "events": [ {"id": "a,]}"} , 7, "s\"]" ,[[]] ], "meta": {"next": null} } "#;
        let page = split_page(text).unwrap();
        assert_eq!(page.events, [r#"{"id": "a,]}"}"#, "7", r#""s\"]""#, "[[]]"]);
        assert_eq!(page.meta, Some(r#"{"next": null}"#));
        assert_eq!(
            split_page(r#"{"events": null}"#).unwrap(),
            SplitPage::default()
        );
        assert_eq!(split_page("{}").unwrap(), SplitPage::default());
        assert_eq!(split_page(r#"{"events": []}"#).unwrap().events.len(), 0);
    }

    #[test]
    fn lexical_garbage_inside_an_element_stays_inside_it() {
        let text = "{\"events\": [{\"id\": \"a\"}, {\"id\": \"b\", \"x\": \"\\q\u{1}\"}, {\"id\": \"c\"}]}";
        let page = split_page(text).unwrap();
        assert_eq!(page.events.len(), 3);
        assert_eq!(string_member(page.events[1], "id").as_deref(), Some("b"));
    }

    #[test]
    fn deep_nesting_costs_no_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"events": [{{"id": "d", "x": {deep}}}, {{"id": "e"}}]}}"#);
        let page = split_page(&text).unwrap();
        assert_eq!(page.events.len(), 2);
        assert_eq!(string_member(page.events[0], "id").as_deref(), Some("d"));
    }

    #[test]
    fn what_is_not_one_object_with_an_events_array_is_refused() {
        for text in [
            "",
            "[]",
            r#"{"events": {"id": "a"}}"#,
            r#"{"events": [1,]}"#,
            r#"{"events": [1 2]}"#,
            r#"{"events": [[}]}"#,
            r#"{"events": ["open]}"#,
            r#"{"events": []} trailing"#,
            r#"{"events": [], "events": []}"#,
            r#"{"events": [] "meta": {}}"#,
            r#"{"events": [],}"#,
            r#"{events: []}"#,
        ] {
            assert_eq!(split_page(text), None, "{text}");
        }
    }

    #[test]
    fn string_members_read_the_last_top_level_string() {
        let object = r#"{"a": {"id": "inner"}, "id": "x", "id": "y", "n": [1]}"#;
        assert_eq!(string_member(object, "id").as_deref(), Some("y"));
        assert_eq!(string_member(r#"{"id": 7}"#, "id"), None);
        assert_eq!(string_member(r#"{"id": "\ud800"}"#, "id"), None);
        assert_eq!(string_member("7", "id"), None);
        assert_eq!(
            string_member(r#"{"i\u0064": "esc\"aped"}"#, "id").as_deref(),
            Some("esc\"aped")
        );
    }
}
