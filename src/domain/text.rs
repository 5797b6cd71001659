//! What message text may contain: printable text, line breaks and tabs.

/// The first character a message text must not carry, with its position (in characters).
///
/// Control characters (NUL, escape, …) corrupt SMS encodings and CRM fields downstream, and the
/// bidirectional overrides and isolates let a sender disguise a link (`moc.knab` shown as
/// `bank.com`), so both are refused; line breaks and tabs are ordinary text.
pub fn forbidden_character(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|&(_, c)| {
        (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    })
}

/// `forbidden_character` in words: "U+0000 at character 12".
pub fn describe(position: usize, c: char) -> String {
    format!("U+{:04X} at character {}", c as u32, position + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_tabs_and_japanese_text_are_allowed() {
        assert_eq!(
            forbidden_character("山田様\r\nご予約は\t12月1日です🎉"),
            None
        );
    }

    #[test]
    fn nul_escape_and_delete_are_refused_with_their_position() {
        assert_eq!(forbidden_character("ab\0c"), Some((2, '\0')));
        assert_eq!(forbidden_character("\u{1b}[31m"), Some((0, '\u{1b}')));
        assert_eq!(forbidden_character("x\u{7f}"), Some((1, '\u{7f}')));
        assert_eq!(forbidden_character("x\u{85}"), Some((1, '\u{85}')));
    }

    #[test]
    fn bidirectional_overrides_are_refused() {
        assert_eq!(
            forbidden_character("https://\u{202E}moc.knab"),
            Some((8, '\u{202E}'))
        );
        assert_eq!(forbidden_character("\u{2067}x"), Some((0, '\u{2067}')));
    }

    #[test]
    fn the_description_names_the_code_point_and_a_one_based_position() {
        assert_eq!(describe(2, '\0'), "U+0000 at character 3");
    }
}
