//! Reading structured response headers: `Link` (RFC 8288) and `Content-Disposition` (RFC 6266).
//!
//! Invariant: these parsers are total — malformed input gives `None` or fewer results, never a
//! panic — and a URL taken from a `Link` header is resolved against the response's URL; it is
//! checked by the outbound guard when it is fetched, like any other.

use url::Url;

/// `name=value` parameters after a header's first item, names lower-cased, quoted values
/// unescaped. Parsing stops at the end of `text` or at a `,` outside quotes (returned as the
/// rest of the text).
fn parse_params(mut text: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        text = text.trim_start();
        let Some(rest) = text.strip_prefix(';') else { break };
        let rest = rest.trim_start();
        let name_end = rest.find(['=', ';', ',']).unwrap_or(rest.len());
        let name = rest[..name_end].trim().to_ascii_lowercase();
        text = &rest[name_end..];
        let value = match text.strip_prefix('=') {
            Some(after) => {
                let after = after.trim_start();
                let (value, rest) = match after.strip_prefix('"') {
                    Some(quoted) => quoted_string(quoted),
                    None => {
                        let end = after.find([';', ',']).unwrap_or(after.len());
                        (after[..end].trim().to_string(), &after[end..])
                    }
                };
                text = rest;
                value
            }
            None => String::new(),
        };
        if !name.is_empty() {
            params.push((name, value));
        }
    }
    (params, text)
}

/// The content of a quoted string (the opening quote already consumed) and the text after it.
fn quoted_string(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => return (value, &text[index + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            other => value.push(other),
        }
    }
    (value, "")
}

/// The target of the first `rel="next"` link among `values` (every `Link` header of a
/// response), resolved against `base`.
pub(super) fn next_link<'a>(values: impl IntoIterator<Item = &'a str>, base: &Url) -> Option<Url> {
    for value in values {
        let mut text = value;
        loop {
            text = text.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            let Some(rest) = text.strip_prefix('<') else { break };
            let Some(end) = rest.find('>') else { break };
            let target = rest[..end].trim();
            let (params, after) = parse_params(&rest[end + 1..]);
            let is_next = params.iter().any(|(name, value)| {
                name == "rel" && value.split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return base.join(target).ok();
            }
            // Skip anything unparsed up to the next link.
            text = match after.find(',') {
                Some(comma) => &after[comma..],
                None => "",
            };
        }
    }
    None
}

/// The file name a `Content-Disposition` header gives (`filename*` preferred over `filename`),
/// reduced to its last path component.
pub(super) fn disposition_filename(value: &str) -> Option<String> {
    let first_end = value.find(';').unwrap_or(value.len());
    let (params, _) = parse_params(&value[first_end..]);
    let extended = params.iter().find(|(name, _)| name == "filename*").and_then(|(_, value)| {
        // charset'language'percent-encoded
        let mut parts = value.splitn(3, '\'');
        let charset = parts.next()?;
        let _language = parts.next()?;
        let encoded = parts.next()?;
        let bytes = percent_decode(encoded);
        if charset.eq_ignore_ascii_case("utf-8") {
            String::from_utf8(bytes).ok()
        } else {
            // ISO-8859-1: every byte is the code point of the same number.
            Some(bytes.into_iter().map(char::from).collect())
        }
    });
    let name = extended.or_else(|| params.iter().find(|(name, _)| name == "filename").map(|(_, v)| v.clone()))?;
    clean_file_name(&name)
}

/// The last segment of `url`'s path, percent-decoded, if it makes a file name.
pub(super) fn url_file_name(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    clean_file_name(&String::from_utf8_lossy(&percent_decode(segment)))
}

/// The last path component, without control characters, at most 255 characters; `None` when
/// nothing usable is left.
fn clean_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then(|| cleaned.to_string())
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes.get(index + 1..index + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[index], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), url::ParseError>;

    fn next(values: &[&str]) -> Result<Option<String>, url::ParseError> {
        let base = Url::parse("https://api.example.com/v1/items?page=1")?;
        Ok(next_link(values.iter().copied(), &base).map(|u| u.to_string()))
    }

    #[test]
    fn the_next_link_is_found_among_others_and_resolved() -> TestResult {
        let header = r#"<https://api.example.com/v1/items?page=1>; rel="first", </v1/items?page=2>; rel="next", <?page=9>; rel=last"#;
        assert_eq!(next(&[header])?.as_deref(), Some("https://api.example.com/v1/items?page=2"));
        assert_eq!(
            next(&[r#"<?page=3>; rel="prev next""#])?.as_deref(),
            Some("https://api.example.com/v1/items?page=3")
        );
        assert_eq!(next(&["<a?x=1>; rel=NEXT"])?.as_deref(), Some("https://api.example.com/v1/a?x=1"));
        Ok(())
    }

    #[test]
    fn links_are_read_across_repeated_headers_and_odd_parameters() -> TestResult {
        let values = [r#"<https://a.example/1>; rel="last""#, r#"<https://a.example/2>; title="a, b; c"; rel="next""#];
        assert_eq!(next(&values)?.as_deref(), Some("https://a.example/2"));
        Ok(())
    }

    #[test]
    fn no_next_link_or_a_malformed_header_gives_none() -> TestResult {
        for header in
            ["", r#"<https://a.example/1>; rel="prev""#, "garbage", "<unterminated; rel=next", r#"<x>; rel="nextpage""#]
        {
            assert_eq!(next(&[header])?, None, "{header}");
        }
        Ok(())
    }

    #[test]
    fn content_disposition_file_names_prefer_the_extended_form() {
        assert_eq!(disposition_filename(r#"attachment; filename="report.pdf""#).as_deref(), Some("report.pdf"));
        assert_eq!(disposition_filename("inline; filename=plain.txt").as_deref(), Some("plain.txt"));
        assert_eq!(
            disposition_filename(r#"attachment; filename="fallback.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"#)
                .as_deref(),
            Some("résumé.pdf")
        );
        assert_eq!(disposition_filename("attachment; filename*=iso-8859-1'en'caf%E9.txt").as_deref(), Some("café.txt"));
        assert_eq!(
            disposition_filename(r#"attachment; filename="a \"quoted\" name.txt""#).as_deref(),
            Some(r#"a "quoted" name.txt"#)
        );
    }

    #[test]
    fn file_names_lose_directories_and_control_characters() {
        assert_eq!(disposition_filename(r#"attachment; filename="../../etc/passwd""#).as_deref(), Some("passwd"));
        assert_eq!(disposition_filename(r#"attachment; filename="C:\\temp\\x.png""#).as_deref(), Some("x.png"));
        assert_eq!(disposition_filename("attachment; filename=\"a\u{7}b.txt\"").as_deref(), Some("ab.txt"));
        assert_eq!(disposition_filename(r#"attachment; filename="..""#), None);
        assert_eq!(disposition_filename("attachment"), None);
    }

    #[test]
    fn url_file_names_are_the_last_non_empty_segment_decoded() -> Result<(), url::ParseError> {
        assert_eq!(
            url_file_name(&Url::parse("https://x.example/files/my%20photo.png?s=1")?).as_deref(),
            Some("my photo.png")
        );
        assert_eq!(url_file_name(&Url::parse("https://x.example/files/report/")?).as_deref(), Some("report"));
        assert_eq!(url_file_name(&Url::parse("https://x.example/")?), None);
        Ok(())
    }
}
