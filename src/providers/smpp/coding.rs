//! The text of a payload from the SMSC by its `data_coding` (SMPP 3.4 §5.2.19), so that a
//! reply reads as the handset wrote it whatever alphabet the SMSC chose.

use encoding_rs::{Encoding, EUC_JP, EUC_KR, ISO_2022_JP, ISO_8859_5, ISO_8859_8, SHIFT_JIS};

use crate::domain::segment;

/// ISO-2022 designations start with ESC; 8-bit Japanese codings never contain it.
const ESCAPE: u8 = 0x1B;

/// Text of `bytes` sent with `data_coding`.
pub(super) fn decode(data_coding: u8, bytes: &[u8]) -> String {
    match data_coding {
        0x00 => segment::gsm7_decode(bytes),
        // IA5 is ASCII; an SMSC that puts UTF-8 here still reads right.
        0x01 => String::from_utf8_lossy(bytes).into_owned(),
        0x02 | 0x04 => binary(bytes),
        // Latin-1: each byte is its own code point (encoding_rs only has windows-1252).
        0x03 => bytes.iter().map(|&b| char::from(b)).collect(),
        // "JIS (X 0208-1990)" names a character set, not a byte form. Its 7-bit form,
        // ISO-2022-JP (RFC 1468, what Japanese calls "JIS code"), is what the escape sequences
        // show; SMSCs that send bytes above 0x7F use Shift_JIS (the `smpp` crate even names
        // 0x05 ShiftJis) or EUC-JP. Kannel passes 0x05 through undecoded.
        0x05 => japanese(bytes),
        0x06 => with(ISO_8859_5, bytes),
        0x07 => with(ISO_8859_8, bytes),
        0x08 => utf16(bytes),
        // "ISO-2022-JP (Music Codes)".
        0x0A => with(ISO_2022_JP, bytes),
        // "Extended Kanji JIS (X 0212-1990)": JIS X 0212 travels in EUC-JP (after SS3, 0x8F),
        // the form the SMSCs that use 0x0D send (the `smpp` crate names it EucJp).
        0x0D => japanese(bytes),
        // KS C 5601 in its usual byte form.
        0x0E => with(EUC_KR, bytes),
        other => gsm_scheme(other, bytes),
    }
}

/// Values SMPP 3.4 leaves reserved, read as the GSM 03.38 data coding scheme some SMSCs copy
/// into `data_coding` (a message class, say): its alphabet bits, GSM-7 when it names none.
fn gsm_scheme(dcs: u8, bytes: &[u8]) -> String {
    let alphabet = match dcs {
        // General data coding, uncompressed: bits 3-2.
        0x10..=0x1F | 0x40..=0x5F => (dcs >> 2) & 0x03,
        // Compressed text cannot be read.
        0x20..=0x3F | 0x60..=0x7F => return binary(bytes),
        // Message waiting, UCS-2 group.
        0xE0..=0xEF => 2,
        // Data coding / message class: bit 2 says 8-bit.
        0xF0..=0xFF => (dcs >> 2) & 0x01,
        _ => 0,
    };
    match alphabet {
        1 => binary(bytes),
        2 => utf16(bytes),
        _ => segment::gsm7_decode(bytes),
    }
}

/// Japanese text in whichever of its three byte forms it came: ISO-2022-JP when it carries
/// escape sequences (or is plain ASCII, which it reads as is), else EUC-JP if it reads without
/// error, else Shift_JIS. EUC-JP goes first because it is the stricter: almost any Shift_JIS
/// kana or kanji has a byte in 0x81..0x9F that EUC-JP refuses, while EUC-JP text would
/// read as (wrong) Shift_JIS.
fn japanese(bytes: &[u8]) -> String {
    if bytes.contains(&ESCAPE) || bytes.is_ascii() {
        return with(ISO_2022_JP, bytes);
    }
    match EUC_JP.decode_without_bom_handling_and_without_replacement(bytes) {
        Some(text) => text.into_owned(),
        None => with(SHIFT_JIS, bytes),
    }
}

/// Big-endian UTF-16 (UCS-2 is its subset); an unpaired surrogate reads as U+FFFD.
fn utf16(bytes: &[u8]) -> String {
    with(encoding_rs::UTF_16BE, bytes)
}

/// 8-bit data: the text when it is UTF-8 (as some SMSCs send it), otherwise hex, so that
/// nothing of a payload that is no text at all is lost to replacement characters.
fn binary(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => hex::encode(bytes),
    }
}

fn with(encoding: &'static Encoding, bytes: &[u8]) -> String {
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 停止 in ISO-2022-JP: ESC $ B, the JIS X 0208 row/cell pairs, ESC ( B.
    const STOP_ISO_2022_JP: &[u8] = b"\x1b$B\x44\x64\x3b\x5f\x1b(B";

    #[test]
    fn gsm7_reads_basic_and_extension_characters() {
        assert_eq!(decode(0x00, &[b'H', b'i', 0x00, 0x1B, 0x65]), "Hi@€");
    }

    #[test]
    fn ia5_is_ascii() {
        assert_eq!(decode(0x01, b"STOP @{}"), "STOP @{}");
    }

    #[test]
    fn latin1_maps_each_byte_to_its_code_point() {
        assert_eq!(decode(0x03, &[0xE9, 0x80, b'a']), "é\u{80}a");
    }

    #[test]
    fn eight_bit_data_is_kept_as_text_when_utf8_and_as_hex_otherwise() {
        assert_eq!(decode(0x04, "停止".as_bytes()), "停止");
        assert_eq!(decode(0x02, &[0x00, 0xFF, 0x10]), "00ff10");
    }

    #[test]
    fn jis_reads_iso_2022_jp_and_shift_jis_and_euc_jp() {
        assert_eq!(decode(0x05, STOP_ISO_2022_JP), "停止");
        assert_eq!(decode(0x05, &[0x92, 0xE2, 0x8E, 0x7E]), "停止");
        assert_eq!(decode(0x05, &[0xC4, 0xE4, 0xBB, 0xDF]), "停止");
        assert_eq!(decode(0x05, b"STOP"), "STOP");
    }

    #[test]
    fn iso_2022_jp_music_codes_read_as_iso_2022_jp() {
        assert_eq!(decode(0x0A, STOP_ISO_2022_JP), "停止");
        assert_eq!(decode(0x0A, b"\x1b$B\x24\x4f\x24\x24\x1b(B OK"), "はい OK");
    }

    #[test]
    fn extended_kanji_reads_euc_jp_with_jis_x_0212_and_the_other_forms() {
        assert_eq!(decode(0x0D, &[0xC4, 0xE4, 0xBB, 0xDF]), "停止");
        // 0x8F starts a JIS X 0212 character: row 0x30, cell 0x21 is 丂.
        assert_eq!(decode(0x0D, &[0x8F, 0xB0, 0xA1]), "丂");
        assert_eq!(decode(0x0D, STOP_ISO_2022_JP), "停止");
        assert_eq!(decode(0x0D, &[0x92, 0xE2, 0x8E, 0x7E]), "停止");
    }

    #[test]
    fn ucs2_reads_utf16_with_surrogate_pairs() {
        assert_eq!(decode(0x08, &[0x30, 0x42, 0xD8, 0x3D, 0xDE, 0x00]), "あ😀");
    }

    #[test]
    fn cyrillic_hebrew_and_korean_read_by_their_iso_and_euc_codings() {
        assert_eq!(decode(0x06, &[0xBF, 0xE0, 0xD8]), "При");
        assert_eq!(decode(0x07, &[0xF9, 0xEC, 0xE5, 0xED]), "שלום");
        assert_eq!(decode(0x0E, &[0xC7, 0xD1]), "한");
    }

    #[test]
    fn gsm_coding_schemes_in_reserved_values_read_by_their_alphabet() {
        // Class 1 GSM-7, class 1 UCS-2, class 1 8-bit.
        assert_eq!(decode(0xF1, b"Hi"), "Hi");
        assert_eq!(decode(0x19, &[0x30, 0x42]), "あ");
        assert_eq!(decode(0xF5, &[0xFF]), "ff");
    }
}
