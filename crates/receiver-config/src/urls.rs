//! URLs in the config: shown in messages without their credentials, and
//! checked for a token that would travel unencrypted.

use std::borrow::Cow;

use url::Url;

/// `text` with anything between the scheme and an `@` in the authority
/// replaced, so a message can show a URL but never its credentials.
pub(super) fn without_userinfo(text: &str) -> Cow<'_, str> {
    let start = text.find("://").map_or(0, |at| at + 3);
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |at| start + at);
    match text[start..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!(
            "{}[REDACTED]{}",
            &text[..start],
            &text[start + at..]
        )),
        None => Cow::Borrowed(text),
    }
}

/// The warning for a plain-http URL that would carry `token` over the
/// network: loopback hosts (a local proxy, a simulator) are exempt.
pub(super) fn plain_http_warning(key: &str, url: &Url, token: &str) -> Option<String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    };
    (url.scheme() == "http" && !loopback)
        .then(|| format!("{key} uses plain http: the {token} is sent unencrypted"))
}

pub(super) fn trim_trailing_slash(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_lose_their_credentials() {
        for (text, shown) in [
            ("ftp://u:p@h:1/x?q@r", "ftp://[REDACTED]@h:1/x?q@r"),
            ("https://u@h", "https://[REDACTED]@h"),
            ("u:p@h/x", "[REDACTED]@h/x"),
            ("https://h/x@y", "https://h/x@y"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_userinfo(text), shown, "{text}");
        }
    }
}
