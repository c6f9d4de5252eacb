//! A path under an integration's `apiBaseUrl`, as a `format: path` param gives it (or a
//! config's `testEndpointPath`): sent as given, so it is checked as every server along the way
//! might read it. Invariant: a path that passes [`check`] has no dot segment, no encoded or
//! backslash separator and no control character however many times it is percent-decoded,
//! so no normalising server (or proxy) resolves it to a place outside the base path.

/// Why a path could leave the base path (or is not a plain path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    #[error("it must start with `/`")]
    NotAbsolute,
    #[error("it may not contain `//`")]
    EmptySegment,
    #[error("it may not contain a `.` or `..` segment, in any encoding (`%2e`, `%252e`, …)")]
    DotSegment,
    #[error("it may not contain an encoded `/` or `\\` (`%2f`, `%5c`, `%252f`, …)")]
    EncodedSeparator,
    #[error("it may not contain `\\`")]
    Backslash,
    #[error("it may not contain control characters (NUL, line breaks, …), in any encoding")]
    ControlCharacter,
    #[error("it may not contain characters that some servers read as `.`, `/` or `\\`")]
    Lookalike,
    #[error("it must decode to UTF-8 text")]
    NotText,
    #[error("it is percent-encoded too many times over")]
    TooDeep,
}

/// How many layers of percent-encoding are undone before giving up.
const MAX_DECODINGS: usize = 8;

/// Characters that Unicode normalisation (NFKC, as some servers apply) or lenient decoders turn
/// into `.`, `/` or `\`.
const LOOKALIKES: &[char] = &[
    '\u{2024}', '\u{3002}', '\u{FE52}', '\u{FF0E}', '\u{FF61}', // dots
    '\u{2044}', '\u{2215}', '\u{FF0F}', // slashes
    '\u{2216}', '\u{29F5}', '\u{FE68}', '\u{FF3C}', // backslashes
];

/// Checks that `text` is a path under the base path however it is read: percent-decoded until
/// stable, every layer is free of encoded separators, backslashes and control characters, and
/// the decoded path has no empty, `.` or `..` segment (nor `..;x`, `.. ` or `...`, which some
/// servers read as `..`).
pub fn check(text: &str) -> Result<(), UnsafePath> {
    if !text.starts_with('/') {
        return Err(UnsafePath::NotAbsolute);
    }
    let mut layer = text.as_bytes().to_vec();
    for _ in 0..MAX_DECODINGS {
        inspect_layer(&layer)?;
        let decoded = percent_decode(&layer);
        if decoded == layer {
            return inspect_decoded(&layer);
        }
        layer = decoded;
    }
    Err(UnsafePath::TooDeep)
}

/// One layer of the path, before it is decoded again.
fn inspect_layer(layer: &[u8]) -> Result<(), UnsafePath> {
    if layer.iter().any(|b| b.is_ascii_control()) {
        return Err(UnsafePath::ControlCharacter);
    }
    if layer.contains(&b'\\') {
        return Err(UnsafePath::Backslash);
    }
    let encoded_separator = layer.windows(3).any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'))
        || layer.windows(3).any(|w| w[0] == b'%' && w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c'));
    if encoded_separator {
        return Err(UnsafePath::EncodedSeparator);
    }
    Ok(())
}

/// The path once nothing more decodes.
fn inspect_decoded(decoded: &[u8]) -> Result<(), UnsafePath> {
    let text = std::str::from_utf8(decoded).map_err(|_| UnsafePath::NotText)?;
    if text.chars().any(char::is_control) {
        return Err(UnsafePath::ControlCharacter);
    }
    if text.contains(LOOKALIKES) {
        return Err(UnsafePath::Lookalike);
    }
    if text.contains("//") {
        return Err(UnsafePath::EmptySegment);
    }
    for segment in text.split('/') {
        // `..;jsessionid=x` is `..` to servlet containers; `.. ` and `...` are `..` on Windows.
        let name = segment.split(';').next().unwrap_or_default().trim_end_matches([' ', '\t']);
        if !name.is_empty() && name.chars().all(|c| c == '.') {
            return Err(UnsafePath::DotSegment);
        }
    }
    Ok(())
}

/// `%XX` turned into its byte; any other `%` is kept.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_under_the_base_pass() {
        for path in [
            "/",
            "/things",
            "/things/",
            "/a/b.json",
            "/v1/users/42/.well-known",
            "/a/..b/c..",
            "/search?q=x",
            "/a%20b",
            "/caf%C3%A9",
            "/100%",
            "/%zz",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn a_path_must_start_with_one_slash() {
        assert_eq!(check("things"), Err(UnsafePath::NotAbsolute));
        assert_eq!(check(""), Err(UnsafePath::NotAbsolute));
        assert_eq!(check("%2fthings"), Err(UnsafePath::NotAbsolute));
        for path in ["//evil.example/x", "/a//b", "/%2f/evil.example", "/a/%2F%2Fb"] {
            assert!(matches!(check(path), Err(UnsafePath::EmptySegment | UnsafePath::EncodedSeparator)), "{path}");
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_encoding() {
        for path in [
            "/..",
            "/../admin",
            "/a/../admin",
            "/a/./b",
            "/a/.",
            "/a/%2e%2e/admin",
            "/a/%2E%2e/admin",
            "/a/%2e/b",
            "/a/.%2e/admin",
            "/a/%2e./admin",
            "/a/%252e%252e/admin",
            "/a/%25252e%25252E/admin",
            "/a/%252E./admin",
            "/a/%25%32%65%25%32%65/admin",
            "/a/..;x=1/admin",
            "/a/.. /admin",
            "/a/.../admin",
        ] {
            assert_eq!(check(path), Err(UnsafePath::DotSegment), "{path}");
        }
    }

    #[test]
    fn encoded_separators_are_refused_in_any_case_and_encoding_depth() {
        for path in [
            "/a/..%2f..%2fadmin",
            "/a/..%2F..%2Fadmin",
            "/x/%2e%2e%2f%2e%2e%2fadmin",
            "/x/%2E%2E%2F%2E%2E%2Fadmin",
            "/a/%252f",
            "/a/..%252f..%252fadmin",
            "/a/%25252f",
            "/a/..%5c..%5cadmin",
            "/a/..%5C..%5Cadmin",
            "/a/..%255c..%255cadmin",
            "/a/b%2fc",
            "/a/%25%32%66",
        ] {
            assert_eq!(check(path), Err(UnsafePath::EncodedSeparator), "{path}");
        }
    }

    #[test]
    fn backslashes_are_refused() {
        for path in ["/a/..\\admin", "/a\\b", "/\\\\evil.example\\x"] {
            assert_eq!(check(path), Err(UnsafePath::Backslash), "{path}");
        }
    }

    #[test]
    fn control_characters_are_refused_raw_or_encoded() {
        for path in ["/a\0b", "/a%00b", "/a%2500b", "/a\nb", "/a%0d%0aX-Injected:%201", "/a%09b", "/a%7fb", "/a%C2%85b"]
        {
            assert_eq!(check(path), Err(UnsafePath::ControlCharacter), "{path}");
        }
    }

    #[test]
    fn overlong_and_lookalike_dots_and_slashes_are_refused() {
        // `%c0%ae` is an overlong `.`, `%c0%af` an overlong `/` (not UTF-8).
        assert_eq!(check("/a/%c0%ae%c0%ae/admin"), Err(UnsafePath::NotText));
        assert_eq!(check("/a/..%c0%afadmin"), Err(UnsafePath::NotText));
        for path in
            ["/a/%EF%BC%8E%EF%BC%8E/admin", "/a/..%EF%BC%8Fadmin", "/a/\u{FF0E}\u{FF0E}/admin", "/a/..\u{2215}x"]
        {
            assert_eq!(check(path), Err(UnsafePath::Lookalike), "{path}");
        }
    }

    #[test]
    fn endless_encoding_is_refused() {
        let mut path = "/a/x".to_string();
        for _ in 0..MAX_DECODINGS + 1 {
            path = path.replace('%', "%25").replacen("/x", "/%78", 1);
        }
        assert_eq!(check(&path), Err(UnsafePath::TooDeep));
    }
}
