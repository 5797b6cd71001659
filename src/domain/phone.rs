//! Phone numbers and sender ids, read the way Japanese users type them.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::OnceLock,
};

use phonenumber::{country::Id, metadata::DATABASE, Type};
use unicode_normalization::UnicodeNormalization;

mod japan;

/// Dash-like characters people paste in place of '-' (katakana long vowel mark, minus sign, dashes).
const DASHES: [char; 10] = ['-', 'ー', 'ｰ', '−', '‐', '‑', '‒', '–', '—', '―'];

/// Longest input read as a number, in characters: generous for spaces and brackets, small enough
/// to bound the work (the API documents it as the fields' `maxLength`).
pub const MAX_INPUT_CHARS: usize = 64;

/// Calling code of Japan.
const JAPAN: u16 = 81;

/// A valid phone number in E.164 form; constructing one is the only way to get one.
#[derive(Clone, Debug)]
pub struct PhoneNumber {
    e164: String,
    country: u16,
    /// Known once parsed; a number read back from the store works it out when first asked.
    kind: OnceLock<NumberKind>,
}

/// The E.164 text decides everything else about a number.
impl PartialEq for PhoneNumber {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

impl Eq for PhoneNumber {}

impl Hash for PhoneNumber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.e164.hash(state);
    }
}

impl PhoneNumber {
    /// Reads a number as typed (national Japanese, full-width, `+cc`, hyphens, brackets) and keeps it only if valid.
    pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
        // The crate reads "+8190-1234-5678" as calling code 8190 and rejects full-width
        // digits, so separators go and NFKC folds the digits before it sees the text.
        if input.chars().nth(MAX_INPUT_CHARS).is_some() {
            return Err(PhoneError::Invalid);
        }
        // ASCII is its own NFKC form; folding it anyway was about 1% of tsunagi's CPU under load.
        let cleaned = if input.is_ascii() {
            clean(input.chars())?
        } else {
            clean(input.nfkc())?
        };
        if let Some((national, kind)) = japan::read(&cleaned) {
            return Ok(PhoneNumber {
                e164: format!("+{JAPAN}{national}"),
                country: JAPAN,
                kind: OnceLock::from(NumberKind::from(kind)),
            });
        }
        let number = phonenumber::parse(Some(Id::JP), &cleaned).map_err(|_| PhoneError::Invalid)?;
        // The crate's `is_valid` is exactly "type is not Unknown"; classifying once halves the cost.
        let kind = number.number_type(&DATABASE);
        // An extension cannot receive a text, and E.164 would silently drop it.
        if kind == Type::Unknown || number.extension().is_some() {
            return Err(PhoneError::Invalid);
        }
        Ok(Self::from_parts(&number, kind))
    }

    /// Rebuilds a number stored earlier in E.164 form; never fails. Text that is not `+`, digits and a
    /// known calling code gets country 0 and kind Unknown.
    pub fn from_e164_trusted(e164: &str) -> PhoneNumber {
        // Stored rows must stay readable even if the crate's metadata changes under them. Only
        // the calling code is read here: the crate's full parse costs more than the rest of
        // claiming a job, and sending never asks what kind of line a number is.
        let country = e164
            .strip_prefix('+')
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(calling_code)
            .unwrap_or(0);
        let kind = OnceLock::new();
        if country == 0 {
            let _ = kind.set(NumberKind::Unknown);
        }
        PhoneNumber {
            e164: e164.to_owned(),
            country,
            kind,
        }
    }

    fn from_parts(number: &phonenumber::PhoneNumber, kind: Type) -> PhoneNumber {
        PhoneNumber {
            // What the crate's E.164 formatter prints, without its costly search for a
            // national format that E.164 never uses.
            e164: format!("+{}{}", number.code().value(), number.national()),
            country: number.code().value(),
            kind: OnceLock::from(NumberKind::from(kind)),
        }
    }

    /// The number as `+` and digits.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// What sort of line the number belongs to.
    pub fn kind(&self) -> NumberKind {
        *self.kind.get_or_init(|| {
            let japanese = self.is_japanese().then(|| japan::kind(self.national()));
            match japanese.flatten() {
                Some(kind) => NumberKind::from(kind),
                None => match phonenumber::parse(None, &self.e164) {
                    Ok(number) => NumberKind::from(number.number_type(&DATABASE)),
                    Err(_) => NumberKind::Unknown,
                },
            }
        })
    }

    /// The calling code, e.g. 81; 0 when a stored number could not be read back.
    pub fn country_code(&self) -> u16 {
        self.country
    }

    /// Whether the number is Japanese (+81).
    pub fn is_japanese(&self) -> bool {
        self.country == JAPAN
    }

    /// The number with its middle digits hidden, e.g. `+81 90-****-5678`, safe for logs and screens.
    pub fn masked(&self) -> String {
        if self.country == 0 {
            // Without a calling code there is no telling which digits identify whom.
            return mask_all_but_last(&self.e164, 2);
        }
        let nsn: Vec<char> = self.national().chars().collect();
        let hidden = if nsn.len() <= 6 {
            mask_all_but_last(self.national(), 2)
        } else {
            let head: String = nsn[..2].iter().collect();
            let tail: String = nsn[nsn.len() - 4..].iter().collect();
            format!("{head}-{}-{tail}", "*".repeat(nsn.len() - 6))
        };
        format!("+{} {hidden}", self.country)
    }

    /// `+`, the calling code and the first `digits` national digits, for grouping numbers by range.
    pub fn national_prefix(&self, digits: usize) -> String {
        let head: String = self.national().chars().take(digits).collect();
        if self.country == 0 {
            format!("+{head}")
        } else {
            format!("+{}{head}", self.country)
        }
    }

    /// The number without its last four digits: the block of 10,000 subscribers it belongs to.
    pub fn burst_prefix(&self) -> &str {
        match self.e164.char_indices().rev().nth(3) {
            Some((end, _)) if end > 0 => &self.e164[..end],
            _ => &self.e164,
        }
    }

    /// The last `n` digits of the number (all of them when it has fewer).
    pub fn last_digits(&self, n: usize) -> &str {
        let digits = self.e164.trim_start_matches('+');
        if n == 0 {
            return "";
        }
        match digits.char_indices().rev().nth(n - 1) {
            Some((start, _)) => &digits[start..],
            None => digits,
        }
    }

    /// The ways a person commonly writes this number in a CRM field, for finding the records
    /// that hold it with an exact-match query: national and international, with hyphens,
    /// spaces or nothing between the groups, and (for Japanese numbers) in full-width digits.
    pub fn written_forms(&self) -> Vec<String> {
        let mut forms = vec![self.e164.clone()];
        let Ok(number) = phonenumber::parse(None, &self.e164) else {
            return forms;
        };
        let format = |mode| phonenumber::format(&number).mode(mode).to_string();
        let international = format(phonenumber::Mode::International);
        forms.push(international.clone());
        forms.push(international.replace('-', " "));
        forms.push(international.replacen(' ', "-", 1));
        forms.push(self.e164.trim_start_matches('+').to_string());
        if self.is_japanese() {
            let national = format(phonenumber::Mode::National);
            let digits: String = national.chars().filter(char::is_ascii_digit).collect();
            let wide = |text: &str| -> String {
                text.chars()
                    .map(|c| match c {
                        '0'..='9' => char::from_u32(c as u32 - '0' as u32 + '０' as u32)
                            .expect("a full-width digit"),
                        '-' => '－',
                        other => other,
                    })
                    .collect()
            };
            forms.push(wide(&national));
            forms.push(wide(&digits));
            forms.push(national.replace('-', " "));
            forms.push(national);
            forms.push(digits);
        }
        let mut seen = std::collections::HashSet::new();
        forms.retain(|form| seen.insert(form.clone()));
        forms
    }

    /// The national significant number: the digits after the calling code.
    fn national(&self) -> &str {
        let digits = self.e164.trim_start_matches('+');
        if self.country == 0 {
            return digits;
        }
        digits
            .strip_prefix(self.country.to_string().as_str())
            .unwrap_or(digits)
    }
}

/// The digits, brackets and a leading '+' of a number as typed, without its separators.
fn clean(chars: impl Iterator<Item = char>) -> Result<String, PhoneError> {
    let mut cleaned = String::with_capacity(MAX_INPUT_CHARS);
    for c in chars {
        match c {
            '0'..='9' | '(' | ')' => cleaned.push(c),
            '+' if cleaned.is_empty() => cleaned.push(c),
            '.' => {}
            c if c.is_whitespace() || DASHES.contains(&c) => {}
            // The crate would skip junk such as "*", a NUL or a letter and read the digits
            // around it; a number must be the whole input, so anything else refuses it.
            _ => return Err(PhoneError::Invalid),
        }
    }
    Ok(cleaned)
}

/// The calling code `digits` start with: codes are prefix-free, so the first known one is it.
fn calling_code(digits: &str) -> Option<u16> {
    (1..=3)
        .filter_map(|n| digits.get(..n)?.parse::<u16>().ok())
        .find(|code| DATABASE.by_code(code).is_some())
}

/// `text` with every character but the last `keep` replaced by '*'.
fn mask_all_but_last(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + keep < count { '*' } else { c })
        .collect()
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Masked so that a number formatted into a log line by mistake does not leak.
        f.write_str(&self.masked())
    }
}

/// What sort of line a number belongs to.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NumberKind {
    /// A mobile phone (Japan: 060, 070, 080, 090).
    Mobile,
    /// A landline (Japan: geographic 01–09 numbers).
    FixedLine,
    /// A number the plan does not tell apart as landline or mobile (e.g. the US).
    FixedLineOrMobile,
    /// Free to the caller (Japan: 0120, 0800).
    TollFree,
    /// Charged at a premium (Japan: 0990).
    PremiumRate,
    /// Cost shared between caller and callee.
    SharedCost,
    /// An IP phone (Japan: 050).
    Voip,
    /// A number that follows a person across lines.
    PersonalNumber,
    /// A pager (Japan: 020).
    Pager,
    /// A universal access number (Japan: 0570 Navi Dial).
    Uan,
    /// A voicemail access number.
    Voicemail,
    /// Anything else, or a number that could not be classified.
    Unknown,
}

impl From<Type> for NumberKind {
    fn from(kind: Type) -> Self {
        match kind {
            Type::Mobile => Self::Mobile,
            Type::FixedLine => Self::FixedLine,
            Type::FixedLineOrMobile => Self::FixedLineOrMobile,
            Type::TollFree => Self::TollFree,
            Type::PremiumRate => Self::PremiumRate,
            Type::SharedCost => Self::SharedCost,
            Type::Voip => Self::Voip,
            Type::PersonalNumber => Self::PersonalNumber,
            Type::Pager => Self::Pager,
            Type::Uan => Self::Uan,
            Type::Voicemail => Self::Voicemail,
            // Listed rather than matched with `_` so a new crate variant is a compile error to decide on.
            Type::Emergency
            | Type::ShortCode
            | Type::StandardRate
            | Type::Carrier
            | Type::NoInternational
            | Type::Unknown => Self::Unknown,
        }
    }
}

impl fmt::Display for NumberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Words an operator reads in an API error, so named as Japanese users know them.
        f.write_str(match self {
            Self::Mobile => "mobile",
            Self::FixedLine => "landline",
            Self::FixedLineOrMobile => "landline or mobile",
            Self::TollFree => "toll-free",
            Self::PremiumRate => "premium-rate",
            Self::SharedCost => "shared-cost",
            Self::Voip => "IP phone (050)",
            Self::PersonalNumber => "personal",
            Self::Pager => "pager",
            Self::Uan => "navi dial (0570)",
            Self::Voicemail => "voicemail",
            Self::Unknown => "unclassified",
        })
    }
}

/// Text that cannot be used as a phone number or sender id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a valid number (or sender id).
    #[error("is not a phone number")]
    Invalid,
    /// Starts like a 0005 carrier code but has the wrong number of digits.
    #[error(
        "a 0005 carrier code is 0005 and 4 to 6 more digits (8 to 10 in all, e.g. 0005123456)"
    )]
    ShortCodeLength,
}

/// What a sender id may be, for messages that refuse one.
pub const SENDER_FORMS: &str = "a phone number, a 0005 carrier code (0005 and 4 to 6 more digits, e.g. 0005123456) or 1-11 letters and digits";

/// Digits in a 0005 carrier-common code, the `0005` included.
const SHORT_CODE_DIGITS: std::ops::RangeInclusive<usize> = 8..=10;

/// Which recipients a send may go to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct NumberPolicy {
    /// Calling codes allowed, e.g. `[81]`.
    pub allowed_country_codes: Vec<u16>,
    /// Kinds of number allowed, e.g. `["mobile"]`.
    pub allowed_kinds: Vec<NumberKind>,
}

impl Default for NumberPolicy {
    fn default() -> Self {
        // Japanese mobiles only: the cheapest, most deliverable and least abusable recipients.
        Self {
            allowed_country_codes: vec![JAPAN],
            allowed_kinds: vec![NumberKind::Mobile],
        }
    }
}

/// Why a policy refused a recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    /// The number's country is not on the allow list.
    #[error("numbers of country +{0} are not allowed")]
    CountryNotAllowed(u16),
    /// The number's kind is not on the allow list.
    #[error("{0} numbers are not allowed")]
    KindNotAllowed(NumberKind),
}

impl NumberPolicy {
    /// Whether `n` may receive a message; the country is judged before the kind.
    pub fn check(&self, n: &PhoneNumber) -> Result<(), PolicyViolation> {
        if !self.allowed_country_codes.contains(&n.country_code()) {
            return Err(PolicyViolation::CountryNotAllowed(n.country_code()));
        }
        if !self.allowed_kinds.contains(&n.kind()) {
            return Err(PolicyViolation::KindNotAllowed(n.kind()));
        }
        Ok(())
    }
}

/// Who a message appears to come from: an E.164 number, a Japanese carrier-common code (0005 and 4–6 more digits), or an alphanumeric id (1–11 ASCII letters/digits/space, at least one letter).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SenderId {
    /// A full phone number.
    Number(PhoneNumber),
    /// A Japanese carrier short code, digits only.
    ShortCode(String),
    /// An alphanumeric name.
    Alphanumeric(String),
}

impl SenderId {
    /// Reads a sender id, trying short code, then alphanumeric, then phone number.
    pub fn parse(input: &str) -> Result<SenderId, PhoneError> {
        let text: String = input.nfkc().collect();
        let text = text.trim();

        let digits: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && !DASHES.contains(c))
            .collect();
        // Checked first because 0005 numbers are not valid numbers to the crate.
        if digits.starts_with("0005") && digits.bytes().all(|b| b.is_ascii_digit()) {
            return if SHORT_CODE_DIGITS.contains(&digits.len()) {
                Ok(Self::ShortCode(digits))
            } else {
                Err(PhoneError::ShortCodeLength)
            };
        }

        // Any letter means the sender meant a name, so a bad name is an error rather than a number.
        if text.chars().any(char::is_alphabetic) {
            let fits = (1..=11).contains(&text.len())
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ');
            return if fits {
                Ok(Self::Alphanumeric(text.to_owned()))
            } else {
                Err(PhoneError::Invalid)
            };
        }

        PhoneNumber::parse(text).map(Self::Number)
    }

    /// The canonical stored form: E.164, the short code's digits, or the name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Number(n) => n.e164(),
            Self::ShortCode(s) | Self::Alphanumeric(s) => s,
        }
    }
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A sender number can be someone's own phone, so it is masked like any other.
            Self::Number(n) => fmt::Display::fmt(n, f),
            Self::ShortCode(s) | Self::Alphanumeric(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_written_in_the_forms_people_type_and_each_reads_back_as_it() {
        let mobile = PhoneNumber::parse("090-1234-5678").unwrap();
        let forms = mobile.written_forms();
        for form in [
            "09012345678",
            "090-1234-5678",
            "090 1234 5678",
            "+819012345678",
            "+81 90-1234-5678",
            "+81 90 1234 5678",
            "+81-90-1234-5678",
            "819012345678",
            "０９０－１２３４－５６７８",
            "０９０１２３４５６７８",
        ] {
            assert!(forms.contains(&form.to_string()), "{form} in {forms:?}");
        }
        for form in &forms {
            assert_eq!(PhoneNumber::parse(form).unwrap(), mobile, "{form}");
        }
        let tokyo = PhoneNumber::parse("03-1234-5678").unwrap().written_forms();
        assert!(tokyo.contains(&"03-1234-5678".to_string()), "{tokyo:?}");
        let us = PhoneNumber::parse("+1 650-253-0000")
            .unwrap()
            .written_forms();
        assert!(us.contains(&"+16502530000".to_string()));
        assert!(!us.iter().any(|f| f.starts_with('0')), "{us:?}");
    }

    #[test]
    fn e164_matches_the_crates_own_e164_formatter() {
        for input in [
            "090-1234-5678",
            "+14155550123",
            "+44 7911 123456",
            "+39 333 123 4567",
            "+61 2 9374 4000",
            "03-1234-5678",
        ] {
            let ours = PhoneNumber::parse(input).unwrap();
            let crates = phonenumber::parse(Some(Id::JP), input.replace(['-', ' '], ""))
                .unwrap()
                .format()
                .mode(phonenumber::Mode::E164)
                .to_string();
            assert_eq!(ours.e164(), crates, "{input}");
        }
    }
    use serde::de::value::{Error as ValueError, StrDeserializer};
    use serde::de::IntoDeserializer;
    use serde::Deserialize;

    fn kind_of(input: &str) -> NumberKind {
        PhoneNumber::parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .kind()
    }

    #[test]
    fn hyphenated_national_mobile_parses_to_e164() {
        let n = PhoneNumber::parse("090-1234-5678").unwrap();
        assert_eq!(n.e164(), "+819012345678");
        assert_eq!(n.country_code(), 81);
        assert!(n.is_japanese());
        assert_eq!(n.kind(), NumberKind::Mobile);
    }

    #[test]
    fn every_typed_form_of_one_mobile_gives_the_same_e164() {
        for input in [
            "090-1234-5678",
            "09012345678",
            "０９０１２３４５６７８",
            "０９０ー１２３４ー５６７８",
            "０９０－１２３４－５６７８",
            "090−1234−5678",
            "090‐1234‐5678",
            "090―1234―5678",
            "090　1234　5678",
            " 090 1234 5678 ",
            "+81 90 1234 5678",
            "+81 90-1234-5678",
            "+8190-1234-5678",
            "+819012345678",
            "＋８１９０１２３４５６７８",
            "(090)1234-5678",
            "（０９０）１２３４－５６７８",
            "+81 (0)90 1234 5678",
        ] {
            let n = PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(n.e164(), "+819012345678", "{input:?}");
        }
    }

    #[test]
    fn japanese_mobile_prefixes_are_mobile() {
        for input in [
            "090-1234-5678",
            "080-3103-0002",
            "070-1234-5678",
            "060-1234-5678",
        ] {
            assert_eq!(kind_of(input), NumberKind::Mobile, "{input}");
        }
    }

    #[test]
    fn japanese_050_is_voip() {
        assert_eq!(kind_of("050-1234-5678"), NumberKind::Voip);
    }

    #[test]
    fn japanese_020_is_pager() {
        assert_eq!(kind_of("020-4123-4567"), NumberKind::Pager);
    }

    #[test]
    fn japanese_0120_and_0800_are_toll_free() {
        assert_eq!(kind_of("0120-123-456"), NumberKind::TollFree);
        assert_eq!(kind_of("0800-123-4567"), NumberKind::TollFree);
    }

    #[test]
    fn japanese_0570_is_uan() {
        assert_eq!(kind_of("0570-123-456"), NumberKind::Uan);
    }

    #[test]
    fn japanese_0990_is_premium_rate() {
        assert_eq!(kind_of("0990-123-456"), NumberKind::PremiumRate);
    }

    #[test]
    fn japanese_geographic_numbers_are_fixed_line() {
        for input in ["03-1234-5678", "06-6123-4567", "0466-12-3456"] {
            assert_eq!(kind_of(input), NumberKind::FixedLine, "{input}");
        }
    }

    #[test]
    fn japanese_0180_and_0005_are_invalid() {
        assert_eq!(PhoneNumber::parse("0180-123-456"), Err(PhoneError::Invalid));
        assert_eq!(
            PhoneNumber::parse("0005-1234-56789"),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn garbage_is_invalid() {
        for input in [
            "",
            "abc",
            "12",
            "+",
            "090-1234-567",
            "090-1234-56789",
            "  2 22#:",
            "090-1234-5678*",
            "090-1234-5678\0",
            "090-1234-5678#",
            "tel:090-1234-5678",
            "090-1234-5678 x",
            "+81+9012345678",
            "\u{7}09012345678",
        ] {
            assert_eq!(
                PhoneNumber::parse(input),
                Err(PhoneError::Invalid),
                "{input:?}"
            );
        }
    }

    #[test]
    fn number_with_extension_is_invalid() {
        assert_eq!(
            PhoneNumber::parse("090-1234-5678 ext 12"),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn foreign_number_parses_but_default_policy_refuses_its_country() {
        let n = PhoneNumber::parse("+1 415-555-0123").unwrap();
        assert_eq!(n.e164(), "+14155550123");
        assert_eq!(n.country_code(), 1);
        assert!(!n.is_japanese());
        assert_eq!(
            NumberPolicy::default().check(&n),
            Err(PolicyViolation::CountryNotAllowed(1))
        );
    }

    #[test]
    fn default_policy_allows_japanese_mobiles_only() {
        let policy = NumberPolicy::default();
        assert_eq!(policy.allowed_country_codes, vec![81]);
        assert_eq!(policy.allowed_kinds, vec![NumberKind::Mobile]);
        assert_eq!(
            policy.check(&PhoneNumber::parse("090-1234-5678").unwrap()),
            Ok(())
        );
        assert_eq!(
            policy.check(&PhoneNumber::parse("050-1234-5678").unwrap()),
            Err(PolicyViolation::KindNotAllowed(NumberKind::Voip))
        );
        assert_eq!(
            policy.check(&PhoneNumber::parse("03-1234-5678").unwrap()),
            Err(PolicyViolation::KindNotAllowed(NumberKind::FixedLine))
        );
    }

    #[test]
    fn policy_checks_country_before_kind() {
        let policy = NumberPolicy::default();
        let us_toll_free = PhoneNumber::parse("+1 800 555 0123").unwrap();
        assert_eq!(us_toll_free.kind(), NumberKind::TollFree);
        assert_eq!(
            policy.check(&us_toll_free),
            Err(PolicyViolation::CountryNotAllowed(1))
        );
    }

    #[test]
    fn widened_policy_admits_listed_country_and_kind() {
        let policy = NumberPolicy {
            allowed_country_codes: vec![81, 1],
            allowed_kinds: vec![NumberKind::Mobile, NumberKind::FixedLineOrMobile],
        };
        assert_eq!(
            policy.check(&PhoneNumber::parse("+14155550123").unwrap()),
            Ok(())
        );
    }

    #[test]
    fn violations_read_as_human_words() {
        assert_eq!(
            PolicyViolation::KindNotAllowed(NumberKind::Voip).to_string(),
            "IP phone (050) numbers are not allowed"
        );
        assert_eq!(
            PolicyViolation::KindNotAllowed(NumberKind::Uan).to_string(),
            "navi dial (0570) numbers are not allowed"
        );
        assert_eq!(
            PolicyViolation::KindNotAllowed(NumberKind::FixedLine).to_string(),
            "landline numbers are not allowed"
        );
        assert_eq!(
            PolicyViolation::CountryNotAllowed(1).to_string(),
            "numbers of country +1 are not allowed"
        );
        assert_eq!(PhoneError::Invalid.to_string(), "is not a phone number");
    }

    #[test]
    fn number_kind_deserialises_from_snake_case() {
        let kind = |name: &str| {
            let de: StrDeserializer<'_, ValueError> = name.into_deserializer();
            NumberKind::deserialize(de).unwrap()
        };
        assert_eq!(kind("fixed_line_or_mobile"), NumberKind::FixedLineOrMobile);
        assert_eq!(kind("toll_free"), NumberKind::TollFree);
        assert_eq!(kind("voip"), NumberKind::Voip);
    }

    #[test]
    fn japanese_mobile_masks_middle_digits() {
        let n = PhoneNumber::parse("+819012345678").unwrap();
        assert_eq!(n.masked(), "+81 90-****-5678");
    }

    #[test]
    fn foreign_number_masks_middle_digits() {
        let n = PhoneNumber::parse("+14155550123").unwrap();
        assert_eq!(n.masked(), "+1 41-****-0123");
    }

    #[test]
    fn short_national_number_masks_all_but_last_two() {
        let n = PhoneNumber::from_e164_trusted("+6831234");
        assert_eq!(n.country_code(), 683);
        assert_eq!(n.masked(), "+683 **34");
    }

    #[test]
    fn display_is_masked() {
        let n = PhoneNumber::parse("090-1234-5678").unwrap();
        assert_eq!(n.to_string(), "+81 90-****-5678");
        assert!(!format!("{n}").contains("1234"));
    }

    #[test]
    fn national_prefix_truncates_national_digits() {
        let n = PhoneNumber::parse("090-1234-5678").unwrap();
        assert_eq!(n.national_prefix(4), "+819012");
        assert_eq!(n.national_prefix(0), "+81");
        assert_eq!(n.national_prefix(99), "+819012345678");
    }

    #[test]
    fn burst_prefix_drops_the_last_four_digits() {
        let n = PhoneNumber::parse("090-1234-5678").unwrap();
        assert_eq!(n.burst_prefix(), "+81901234");
    }

    #[test]
    fn last_digits_are_taken_from_the_end() {
        let n = PhoneNumber::parse("090-1234-9990").unwrap();
        assert_eq!(n.last_digits(4), "9990");
        assert_eq!(n.last_digits(0), "");
        assert_eq!(n.last_digits(99), "819012349990");
    }

    #[test]
    fn trusted_e164_round_trips() {
        let parsed = PhoneNumber::parse("080-3103-0002").unwrap();
        let back = PhoneNumber::from_e164_trusted(parsed.e164());
        assert_eq!(back, parsed);
        assert_eq!(back.country_code(), 81);
        assert_eq!(back.kind(), NumberKind::Mobile);
        assert_eq!(back.masked(), parsed.masked());
    }

    #[test]
    fn unreadable_trusted_e164_is_kept_as_unknown() {
        let n = PhoneNumber::from_e164_trusted("not-a-number");
        assert_eq!(n.e164(), "not-a-number");
        assert_eq!(n.country_code(), 0);
        assert_eq!(n.kind(), NumberKind::Unknown);
        assert!(!n.is_japanese());
        assert_eq!(n.masked(), "**********er");
        assert_eq!(n.last_digits(3), "ber");
        assert_eq!(n.national_prefix(3), "+not");
    }

    #[test]
    fn a_trusted_number_the_crate_cannot_read_keeps_its_calling_code() {
        let n = PhoneNumber::from_e164_trusted("+8112");
        assert_eq!(n.country_code(), 81);
        assert_eq!(n.kind(), NumberKind::Unknown);
        assert_eq!(PhoneNumber::from_e164_trusted("+1x").country_code(), 0);
    }

    #[test]
    fn non_ascii_trusted_text_never_panics() {
        let n = PhoneNumber::from_e164_trusted("電話番号");
        assert_eq!(n.masked(), "**番号");
        assert_eq!(n.last_digits(1), "号");
        assert_eq!(n.national_prefix(1), "+電");
        assert_eq!(PhoneNumber::from_e164_trusted("").masked(), "");
    }

    #[test]
    fn carrier_short_code_sender_keeps_its_digits() {
        let s = SenderId::parse("0005123456").unwrap();
        assert_eq!(s, SenderId::ShortCode("0005123456".into()));
        assert_eq!(s.as_str(), "0005123456");
        assert_eq!(s.to_string(), "0005123456");
        assert_eq!(
            SenderId::parse("０００５－１２３４５６").unwrap(),
            SenderId::ShortCode("0005123456".into())
        );
        assert_eq!(
            SenderId::parse("0005-12-3456").unwrap(),
            SenderId::ShortCode("0005123456".into())
        );
    }

    #[test]
    fn carrier_codes_are_eight_to_ten_digits_and_others_say_what_one_looks_like() {
        for ok in ["00051234", "000512345", "0005123456"] {
            assert_eq!(
                SenderId::parse(ok),
                Ok(SenderId::ShortCode(ok.into())),
                "{ok}"
            );
        }
        for bad in ["0005123", "00051234567", "000512345678", "0005"] {
            assert_eq!(
                SenderId::parse(bad),
                Err(PhoneError::ShortCodeLength),
                "{bad}"
            );
        }
        assert!(PhoneError::ShortCodeLength
            .to_string()
            .contains("0005123456"));
    }

    #[test]
    fn alphanumeric_sender_is_kept_as_written() {
        let s = SenderId::parse("TSUNAGI").unwrap();
        assert_eq!(s, SenderId::Alphanumeric("TSUNAGI".into()));
        assert_eq!(s.as_str(), "TSUNAGI");
        assert_eq!(s.to_string(), "TSUNAGI");
        assert_eq!(
            SenderId::parse("ＴＳＵＮＡＧＩ 2").unwrap(),
            SenderId::Alphanumeric("TSUNAGI 2".into())
        );
    }

    #[test]
    fn alphanumeric_sender_over_eleven_or_non_ascii_is_invalid() {
        assert_eq!(SenderId::parse("TSUNAGIWORKS"), Err(PhoneError::Invalid));
        assert_eq!(SenderId::parse("つなぎ"), Err(PhoneError::Invalid));
        assert_eq!(SenderId::parse("TSU-NAGI"), Err(PhoneError::Invalid));
        assert_eq!(SenderId::parse(""), Err(PhoneError::Invalid));
        assert_eq!(SenderId::parse("12345"), Err(PhoneError::Invalid));
    }

    #[test]
    fn number_sender_is_stored_in_e164_and_shown_masked() {
        let s = SenderId::parse("+819012345678").unwrap();
        assert_eq!(
            s,
            SenderId::Number(PhoneNumber::parse("090-1234-5678").unwrap())
        );
        assert_eq!(s.as_str(), "+819012345678");
        assert_eq!(s.to_string(), "+81 90-****-5678");
    }
}
