//! How many SMS parts a body takes: GSM-7 when every character allows it, UCS-2 otherwise.

use std::sync::LazyLock;

/// The character set a body is sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet with its extension table.
    Gsm7,
    /// UTF-16, for any body with a character GSM-7 lacks.
    Ucs2,
}

impl Encoding {
    /// Units that fit in a lone SMS, and in each part of a concatenated one (the rest is the UDH).
    fn limits(self) -> (usize, usize) {
        match self {
            Self::Gsm7 => (160, 153),
            Self::Ucs2 => (70, 67),
        }
    }

    /// Units `c` takes in this encoding.
    fn units(self, c: char) -> usize {
        match self {
            Self::Gsm7 => gsm7_septets(c).unwrap_or(1),
            Self::Ucs2 => c.len_utf16(),
        }
    }
}

/// How a body goes over the air.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segmentation {
    /// The character set chosen.
    pub encoding: Encoding,
    /// Unicode scalar values in the body: what users count and what length caps apply to.
    pub characters: usize,
    /// SMS parts the body is sent as.
    pub segments: usize,
    /// GSM-7 septets (extension characters count 2) or UTF-16 code units.
    pub units: usize,
}

impl Segmentation {
    /// Measures a body.
    pub fn of(body: &str) -> Segmentation {
        let encoding = encoding_of(body);
        Segmentation {
            encoding,
            characters: body.chars().count(),
            segments: parts(body, encoding).len(),
            units: body.chars().map(|c| encoding.units(c)).sum(),
        }
    }
}

/// Split a body into the texts of its parts, never splitting an extension escape or a surrogate pair.
pub fn split(body: &str) -> Vec<String> {
    parts(body, encoding_of(body))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The body's parts as they go over the air: the encoding, and each part's bytes (GSM-7 as
/// unpacked septets, one a byte, with escapes for the extension table; UCS-2 as big-endian
/// UTF-16), split exactly as `split` splits.
pub fn encoded_parts(body: &str) -> (Encoding, Vec<Vec<u8>>) {
    let encoding = encoding_of(body);
    let parts = match encoding {
        Encoding::Gsm7 => parts(body, encoding)
            .into_iter()
            .map(|part| part.chars().flat_map(gsm7_codes).collect())
            .collect(),
        Encoding::Ucs2 => ucs2_parts(body),
    };
    (encoding, parts)
}

/// The body's parts in UCS-2 even when GSM-7 could carry it (for a peer whose alphabet lacks
/// some GSM-7 characters), split by the UCS-2 rules.
pub fn ucs2_parts(body: &str) -> Vec<Vec<u8>> {
    parts(body, Encoding::Ucs2)
        .into_iter()
        .map(|part| part.encode_utf16().flat_map(u16::to_be_bytes).collect())
        .collect()
}

/// Text from unpacked GSM-7 septets; a code outside the tables reads as '?'.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut codes = septets.iter().copied();
    while let Some(code) = codes.next() {
        let c = match code {
            ESCAPE => codes.next().and_then(|code| {
                GSM7_EXTENSION
                    .iter()
                    .find_map(|&(c, ch)| (c == code).then_some(ch))
            }),
            // The basic table skips the escape code, so later codes sit one place earlier.
            c if c > ESCAPE => GSM7_BASIC.chars().nth(c as usize - 1),
            c => GSM7_BASIC.chars().nth(c as usize),
        };
        text.push(c.unwrap_or('?'));
    }
    text
}

/// The septets of a GSM-7 character (callers have checked it is one).
fn gsm7_codes(c: char) -> impl Iterator<Item = u8> {
    let codes = if let Some(code) = basic_code(c) {
        [Some(code), None]
    } else {
        [Some(ESCAPE), extension_code(c)]
    };
    codes.into_iter().flatten()
}

fn encoding_of(body: &str) -> Encoding {
    if body.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The one packing rule both `Segmentation::of` and `split` use, so their counts cannot disagree.
fn parts(body: &str, encoding: Encoding) -> Vec<&str> {
    let (single, multi) = encoding.limits();
    if body.chars().map(|c| encoding.units(c)).sum::<usize>() <= single {
        return vec![body];
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (at, c) in body.char_indices() {
        let units = encoding.units(c);
        // Whole characters only: a half escape or half surrogate pair would arrive as garbage.
        if used + units > multi {
            parts.push(&body[start..at]);
            start = at;
            used = 0;
        }
        used += units;
    }
    parts.push(&body[start..]);
    parts
}

/// The GSM 03.38 basic table in code order, less the escape code 0x1B.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table as (code after the escape, character): sent as escape plus
/// code, hence two septets each. Pairs rather than two parallel lists, which once swapped `~`
/// and `]` unnoticed because the encoder and the decoder shared the mistake.
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The extension-table code of `c`, if it has one.
fn extension_code(c: char) -> Option<u8> {
    GSM7_EXTENSION
        .iter()
        .find_map(|&(code, ch)| (ch == c).then_some(code))
}

/// The escape into the extension table.
const ESCAPE: u8 = 0x1B;

/// Marks an ASCII character the basic table lacks in `ASCII_BASIC`.
const NOT_BASIC: u8 = 0xFF;

/// The basic-table code of each ASCII character, read once from `GSM7_BASIC`: ASCII dominates
/// real bodies, and every message is measured and encoded character by character.
static ASCII_BASIC: LazyLock<[u8; 128]> = LazyLock::new(|| {
    let mut table = [NOT_BASIC; 128];
    for (at, c) in GSM7_BASIC.chars().enumerate() {
        if c.is_ascii() {
            table[c as usize] = code_at(at);
        }
    }
    table
});

/// The code of the basic table's `at`th character (the table skips the escape code).
fn code_at(at: usize) -> u8 {
    let code = at as u8;
    if code >= ESCAPE {
        code + 1
    } else {
        code
    }
}

/// The basic-table code of `c`, if it has one.
fn basic_code(c: char) -> Option<u8> {
    if c.is_ascii() {
        let code = ASCII_BASIC[c as usize];
        (code != NOT_BASIC).then_some(code)
    } else {
        GSM7_BASIC.chars().position(|b| b == c).map(code_at)
    }
}

/// Septets `c` takes in GSM-7, or None when GSM-7 cannot carry it.
fn gsm7_septets(c: char) -> Option<usize> {
    if basic_code(c).is_some() {
        Some(1)
    } else if extension_code(c).is_some() {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as ValueError, StrDeserializer};
    use serde::de::IntoDeserializer;
    use serde::Deserialize;

    fn units_of(text: &str, encoding: Encoding) -> usize {
        text.chars().map(|c| encoding.units(c)).sum()
    }

    /// Checks the invariants every segmentation must hold, returning the parts.
    fn checked_split(body: &str) -> Vec<String> {
        let seg = Segmentation::of(body);
        let parts = split(body);
        assert_eq!(parts.concat(), body);
        assert_eq!(parts.len(), seg.segments);
        assert_eq!(seg.characters, body.chars().count());
        assert_eq!(seg.units, units_of(body, seg.encoding));
        let (single, multi) = seg.encoding.limits();
        if parts.len() == 1 {
            assert!(seg.units <= single);
        } else {
            assert!(seg.units > single);
            for part in &parts {
                assert!(!part.is_empty());
                assert!(units_of(part, seg.encoding) <= multi);
            }
            // Greedy packing: a part only ends early when its next character would not fit.
            for pair in parts.windows(2) {
                let next = pair[1].chars().next().unwrap();
                assert!(
                    units_of(&pair[0], seg.encoding) + seg.encoding.units(next) > multi,
                    "part ended early"
                );
            }
        }
        parts
    }

    #[test]
    fn gsm7_basic_table_has_127_distinct_single_septet_characters() {
        let distinct: std::collections::HashSet<char> = GSM7_BASIC.chars().collect();
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(distinct.len(), 127);
        for c in GSM7_BASIC.chars() {
            assert_eq!(gsm7_septets(c), Some(1), "{c:?}");
        }
    }

    #[test]
    fn gsm7_parts_are_unpacked_septets_that_decode_back() {
        let body = "Hello @ {x} É€ ñ";
        let (encoding, parts) = encoded_parts(body);
        assert_eq!(encoding, Encoding::Gsm7);
        assert_eq!(parts.len(), 1);
        assert_eq!(&parts[0][..5], b"Hello");
        assert_eq!(gsm7_codes('@').collect::<Vec<_>>(), [0x00]);
        assert_eq!(gsm7_codes('É').collect::<Vec<_>>(), [0x1F]);
        assert_eq!(gsm7_codes('€').collect::<Vec<_>>(), [0x1B, 0x65]);
        assert_eq!(gsm7_codes('{').collect::<Vec<_>>(), [0x1B, 0x28]);
        assert_eq!(gsm7_decode(&parts[0]), body);
        for c in GSM7_BASIC
            .chars()
            .chain(GSM7_EXTENSION.iter().map(|&(_, c)| c))
        {
            let codes: Vec<u8> = gsm7_codes(c).collect();
            assert_eq!(gsm7_decode(&codes), c.to_string());
        }
    }

    /// GSM 03.38 (3GPP TS 23.038 §6.2.1), written out code by code from the standard's table
    /// rather than derived from the module's own tables, so a mistake shared by the encoder and
    /// the decoder still shows.
    const STANDARD_BASIC: [(u8, char); 127] = [
        (0x00, '@'),
        (0x01, '£'),
        (0x02, '$'),
        (0x03, '¥'),
        (0x04, 'è'),
        (0x05, 'é'),
        (0x06, 'ù'),
        (0x07, 'ì'),
        (0x08, 'ò'),
        (0x09, 'Ç'),
        (0x0A, '\n'),
        (0x0B, 'Ø'),
        (0x0C, 'ø'),
        (0x0D, '\r'),
        (0x0E, 'Å'),
        (0x0F, 'å'),
        (0x10, 'Δ'),
        (0x11, '_'),
        (0x12, 'Φ'),
        (0x13, 'Γ'),
        (0x14, 'Λ'),
        (0x15, 'Ω'),
        (0x16, 'Π'),
        (0x17, 'Ψ'),
        (0x18, 'Σ'),
        (0x19, 'Θ'),
        (0x1A, 'Ξ'),
        (0x1C, 'Æ'),
        (0x1D, 'æ'),
        (0x1E, 'ß'),
        (0x1F, 'É'),
        (0x20, ' '),
        (0x21, '!'),
        (0x22, '"'),
        (0x23, '#'),
        (0x24, '¤'),
        (0x25, '%'),
        (0x26, '&'),
        (0x27, '\''),
        (0x28, '('),
        (0x29, ')'),
        (0x2A, '*'),
        (0x2B, '+'),
        (0x2C, ','),
        (0x2D, '-'),
        (0x2E, '.'),
        (0x2F, '/'),
        (0x30, '0'),
        (0x31, '1'),
        (0x32, '2'),
        (0x33, '3'),
        (0x34, '4'),
        (0x35, '5'),
        (0x36, '6'),
        (0x37, '7'),
        (0x38, '8'),
        (0x39, '9'),
        (0x3A, ':'),
        (0x3B, ';'),
        (0x3C, '<'),
        (0x3D, '='),
        (0x3E, '>'),
        (0x3F, '?'),
        (0x40, '¡'),
        (0x41, 'A'),
        (0x42, 'B'),
        (0x43, 'C'),
        (0x44, 'D'),
        (0x45, 'E'),
        (0x46, 'F'),
        (0x47, 'G'),
        (0x48, 'H'),
        (0x49, 'I'),
        (0x4A, 'J'),
        (0x4B, 'K'),
        (0x4C, 'L'),
        (0x4D, 'M'),
        (0x4E, 'N'),
        (0x4F, 'O'),
        (0x50, 'P'),
        (0x51, 'Q'),
        (0x52, 'R'),
        (0x53, 'S'),
        (0x54, 'T'),
        (0x55, 'U'),
        (0x56, 'V'),
        (0x57, 'W'),
        (0x58, 'X'),
        (0x59, 'Y'),
        (0x5A, 'Z'),
        (0x5B, 'Ä'),
        (0x5C, 'Ö'),
        (0x5D, 'Ñ'),
        (0x5E, 'Ü'),
        (0x5F, '§'),
        (0x60, '¿'),
        (0x61, 'a'),
        (0x62, 'b'),
        (0x63, 'c'),
        (0x64, 'd'),
        (0x65, 'e'),
        (0x66, 'f'),
        (0x67, 'g'),
        (0x68, 'h'),
        (0x69, 'i'),
        (0x6A, 'j'),
        (0x6B, 'k'),
        (0x6C, 'l'),
        (0x6D, 'm'),
        (0x6E, 'n'),
        (0x6F, 'o'),
        (0x70, 'p'),
        (0x71, 'q'),
        (0x72, 'r'),
        (0x73, 's'),
        (0x74, 't'),
        (0x75, 'u'),
        (0x76, 'v'),
        (0x77, 'w'),
        (0x78, 'x'),
        (0x79, 'y'),
        (0x7A, 'z'),
        (0x7B, 'ä'),
        (0x7C, 'ö'),
        (0x7D, 'ñ'),
        (0x7E, 'ü'),
        (0x7F, 'à'),
    ];

    /// The extension table (3GPP TS 23.038 §6.2.1.1), each after the escape 0x1B.
    const STANDARD_EXTENSION: [(u8, char); 10] = [
        (0x0A, '\u{0C}'),
        (0x14, '^'),
        (0x28, '{'),
        (0x29, '}'),
        (0x2F, '\\'),
        (0x3C, '['),
        (0x3D, '~'),
        (0x3E, ']'),
        (0x40, '|'),
        (0x65, '€'),
    ];

    #[test]
    fn every_gsm7_character_is_encoded_and_decoded_as_the_standard_writes_it() {
        for (code, c) in STANDARD_BASIC {
            assert_eq!(gsm7_codes(c).collect::<Vec<_>>(), [code], "{c:?}");
            assert_eq!(gsm7_decode(&[code]), c.to_string(), "0x{code:02X}");
            assert_eq!(fake_smsc::text::gsm7_decode(&[code]), c.to_string());
        }
        for (code, c) in STANDARD_EXTENSION {
            assert_eq!(gsm7_codes(c).collect::<Vec<_>>(), [0x1B, code], "{c:?}");
            assert_eq!(gsm7_decode(&[0x1B, code]), c.to_string(), "0x{code:02X}");
            assert_eq!(fake_smsc::text::gsm7_decode(&[0x1B, code]), c.to_string());
        }
    }

    #[test]
    fn every_gsm7_character_reaches_the_handset_across_a_part_boundary() {
        let every: String = STANDARD_BASIC
            .iter()
            .chain(&STANDARD_EXTENSION)
            .map(|&(_, c)| c)
            .collect();
        // Each character once at the septet where a first part of 153 ends, and the rest after.
        for (_, c) in STANDARD_BASIC.iter().chain(&STANDARD_EXTENSION) {
            let body = format!("{}{c}{every}", "a".repeat(152));
            let (encoding, parts) = encoded_parts(&body);
            assert_eq!(encoding, Encoding::Gsm7);
            assert!(parts.len() >= 2, "{c:?}");
            assert!(parts.iter().all(|p| p.len() <= 153));
            let received: String = parts
                .iter()
                .map(|p| fake_smsc::text::gsm7_decode(p))
                .collect();
            assert_eq!(received, body, "{c:?}");
        }
    }

    #[test]
    fn ucs2_parts_are_big_endian_and_split_like_split() {
        let body = format!("{}😀{}", "あ".repeat(66), "い".repeat(70));
        let (encoding, parts) = encoded_parts(&body);
        assert_eq!(encoding, Encoding::Ucs2);
        let texts = split(&body);
        assert_eq!(parts.len(), texts.len());
        for (bytes, text) in parts.iter().zip(&texts) {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            assert_eq!(&String::from_utf16(&units).unwrap(), text);
        }
        assert_eq!(&parts[0][..2], &[0x30, 0x42]);
    }

    #[test]
    fn gsm7_extension_characters_take_two_septets() {
        for (_, c) in GSM7_EXTENSION {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
    }

    #[test]
    fn characters_outside_gsm7_force_ucs2() {
        for c in [
            '`', 'ç', 'á', 'Ã', '\t', '\u{1B}', '\u{0}', 'あ', '😀', '“', '…', '¢',
        ] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
            assert_eq!(
                Segmentation::of(&format!("Hello {c}")).encoding,
                Encoding::Ucs2
            );
        }
    }

    #[test]
    fn every_ascii_char_but_backtick_and_controls_is_gsm7() {
        for c in (' '..='~').filter(|&c| c != '`') {
            assert!(gsm7_septets(c).is_some(), "{c:?}");
        }
    }

    #[test]
    fn empty_body_is_one_segment_of_nothing() {
        let seg = Segmentation::of("");
        assert_eq!(
            seg,
            Segmentation {
                encoding: Encoding::Gsm7,
                characters: 0,
                segments: 1,
                units: 0
            }
        );
        assert_eq!(checked_split(""), vec![String::new()]);
    }

    #[test]
    fn gsm7_160_chars_fit_one_segment_and_161_take_two() {
        let seg = Segmentation::of(&"a".repeat(160));
        assert_eq!(
            (seg.encoding, seg.segments, seg.units),
            (Encoding::Gsm7, 1, 160)
        );
        assert_eq!(Segmentation::of(&"a".repeat(161)).segments, 2);
        let parts = checked_split(&"a".repeat(161));
        assert_eq!((parts[0].len(), parts[1].len()), (153, 8));
    }

    #[test]
    fn gsm7_306_chars_take_two_segments_and_307_take_three() {
        assert_eq!(Segmentation::of(&"a".repeat(306)).segments, 2);
        assert_eq!(Segmentation::of(&"a".repeat(307)).segments, 3);
        assert_eq!(checked_split(&"a".repeat(307)).len(), 3);
    }

    #[test]
    fn eighty_extension_chars_fill_one_segment() {
        let seg = Segmentation::of(&"{".repeat(80));
        assert_eq!(
            (seg.encoding, seg.characters, seg.units, seg.segments),
            (Encoding::Gsm7, 80, 160, 1)
        );
    }

    #[test]
    fn eighty_one_extension_chars_split_without_halving_an_escape() {
        let body = "{".repeat(81);
        let seg = Segmentation::of(&body);
        assert_eq!((seg.units, seg.segments), (162, 2));
        let parts = checked_split(&body);
        // 153 is odd, so each part holds 76 escapes (152 septets) and leaves one septet unused.
        assert_eq!(parts, vec!["{".repeat(76), "{".repeat(5)]);
    }

    #[test]
    fn extension_char_at_septet_153_moves_to_the_next_part() {
        let body = format!("{}{{{}", "a".repeat(152), "b".repeat(20));
        let parts = checked_split(&body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "a".repeat(152));
        assert!(parts[1].starts_with('{'));
    }

    #[test]
    fn ucs2_70_chars_fit_one_segment_and_71_take_two() {
        let seg = Segmentation::of(&"あ".repeat(70));
        assert_eq!(
            (seg.encoding, seg.segments, seg.units),
            (Encoding::Ucs2, 1, 70)
        );
        assert_eq!(Segmentation::of(&"あ".repeat(71)).segments, 2);
        assert_eq!(checked_split(&"あ".repeat(71)).len(), 2);
    }

    #[test]
    fn ucs2_134_chars_take_two_segments_and_135_take_three() {
        assert_eq!(Segmentation::of(&"あ".repeat(134)).segments, 2);
        assert_eq!(Segmentation::of(&"あ".repeat(135)).segments, 3);
        assert_eq!(checked_split(&"あ".repeat(135)).len(), 3);
    }

    #[test]
    fn ucs2_660_chars_take_ten_segments() {
        let seg = Segmentation::of(&"あ".repeat(660));
        assert_eq!((seg.characters, seg.segments), (660, 10));
        assert_eq!(checked_split(&"あ".repeat(660)).len(), 10);
    }

    #[test]
    fn ucs2_661_chars_are_counted_not_capped() {
        let seg = Segmentation::of(&"あ".repeat(661));
        assert_eq!((seg.characters, seg.units, seg.segments), (661, 661, 10));
        assert_eq!(Segmentation::of(&"あ".repeat(671)).segments, 11);
    }

    #[test]
    fn thirty_five_emoji_are_seventy_units_in_one_segment() {
        let seg = Segmentation::of(&"😀".repeat(35));
        assert_eq!(
            (seg.encoding, seg.characters, seg.units, seg.segments),
            (Encoding::Ucs2, 35, 70, 1)
        );
    }

    #[test]
    fn thirty_six_emoji_take_two_segments() {
        let seg = Segmentation::of(&"😀".repeat(36));
        assert_eq!((seg.characters, seg.units, seg.segments), (36, 72, 2));
        let parts = checked_split(&"😀".repeat(36));
        assert_eq!(parts, vec!["😀".repeat(33), "😀".repeat(3)]);
    }

    #[test]
    fn emoji_at_a_part_boundary_starts_the_next_part() {
        let body = format!("{}😀{}", "あ".repeat(66), "いう".repeat(5));
        let parts = checked_split(&body);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "あ".repeat(66));
        assert!(parts[1].starts_with('😀'));
        for part in &parts {
            assert!(units_of(part, Encoding::Ucs2) <= 67);
        }
    }

    #[test]
    fn an_emoji_kept_whole_at_a_boundary_costs_the_part_the_cut_would_have_saved() {
        // 134 units: two full parts if the surrogate pair were cut after unit 67, three whole.
        let body = format!("{}😀{}", "あ".repeat(66), "い".repeat(66));
        let parts = checked_split(&body);
        assert_eq!(
            parts,
            [
                "あ".repeat(66),
                format!("😀{}", "い".repeat(65)),
                "い".to_string()
            ]
        );
    }

    #[test]
    fn one_non_gsm_char_makes_the_whole_body_ucs2() {
        let body = format!("{}`", "a".repeat(100));
        let seg = Segmentation::of(&body);
        assert_eq!(
            (seg.encoding, seg.units, seg.segments),
            (Encoding::Ucs2, 101, 2)
        );
    }

    #[test]
    fn split_agrees_with_segment_count_on_varied_bodies() {
        let pool: Vec<char> = "aZ9 @£€{}[]~|^\\\nあ漢😀𝄞`ç".chars().collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 700) as usize;
            // Mixed bodies are nearly always UCS-2, so pure GSM-7 and pure non-GSM bodies are drawn too.
            let alphabet = match next() % 3 {
                0 => &pool[..16],
                1 => &pool[..],
                _ => &pool[16..],
            };
            let body: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            checked_split(&body);
        }
    }

    #[test]
    fn encoding_deserialises_from_lowercase_names() {
        let encoding = |name: &str| {
            let de: StrDeserializer<'_, ValueError> = name.into_deserializer();
            Encoding::deserialize(de).unwrap()
        };
        assert_eq!(encoding("gsm7"), Encoding::Gsm7);
        assert_eq!(encoding("ucs2"), Encoding::Ucs2);
    }
}
