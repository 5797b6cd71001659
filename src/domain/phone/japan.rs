//! Japanese numbers typed the national way ("090-1234-5678") or with +81, read with Japan's
//! patterns compiled once. The `phonenumber` crate looks each pattern up in one locked cache on every use,
//! hashing the pattern's text each time: reading a number that way cost more than any other rule
//! of admitting a message. The patterns, the lengths and the order of the checks here are the
//! crate's own (`validator::number_type`), and anything this reading is not sure of (another
//! prefix, an invalid number, patterns that would not compile) is left to the crate; the tests
//! compare the two readings over every prefix.

use std::sync::LazyLock;

use phonenumber::{
    metadata::{Descriptor, DATABASE},
    Type,
};
use regex::{Regex, RegexBuilder};

/// One kind of number: the lengths it can have and its pattern.
struct Kind {
    lengths: Vec<u16>,
    pattern: Regex,
    /// The pattern's text, for telling whether two kinds are one.
    source: String,
}

impl Kind {
    /// Compiled as the crate compiles it (whitespace in the pattern ignored), anchored at the
    /// start: the crate asks whether the leftmost match starts there, which is whether any
    /// match does, and an anchored match is found without searching the rest of the text.
    fn of(descriptor: &Descriptor) -> Option<Kind> {
        let source = descriptor.national_number().as_str().to_string();
        // The closing bracket on a line of its own, in case the pattern ends in a comment.
        let pattern = RegexBuilder::new(&format!("^(?:{source}\n)"))
            .ignore_whitespace(true)
            .build()
            .ok()?;
        Some(Kind {
            lengths: descriptor.possible_length().to_vec(),
            pattern,
            source,
        })
    }

    /// As `Descriptor::is_match`: a possible length, and the pattern found at the start.
    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.pattern.is_match(national)
    }
}

/// Japan's kinds of numbers, in the order the crate tries them.
struct Plan {
    general: Kind,
    /// Premium rate, toll free, shared cost, VoIP, personal, pager, UAN, voicemail.
    special: Vec<(Type, Kind)>,
    fixed_line: Option<Kind>,
    mobile: Option<Kind>,
}

impl Plan {
    fn japan() -> Option<Plan> {
        let descriptors = DATABASE.by_id("JP")?.descriptors();
        // Absent is no kind; present but not compiling gives up the plan.
        let optional = |d: Option<&Descriptor>| match d {
            Some(d) => Kind::of(d).map(Some),
            None => Some(None),
        };
        let mut special = Vec::new();
        for (kind, descriptor) in [
            (Type::PremiumRate, descriptors.premium_rate()),
            (Type::TollFree, descriptors.toll_free()),
            (Type::SharedCost, descriptors.shared_cost()),
            (Type::Voip, descriptors.voip()),
            (Type::PersonalNumber, descriptors.personal_number()),
            (Type::Pager, descriptors.pager()),
            (Type::Uan, descriptors.uan()),
            (Type::Voicemail, descriptors.voicemail()),
        ] {
            if let Some(descriptor) = descriptor {
                special.push((kind, Kind::of(descriptor)?));
            }
        }
        Some(Plan {
            general: Kind::of(descriptors.general())?,
            special,
            fixed_line: optional(descriptors.fixed_line())?,
            mobile: optional(descriptors.mobile())?,
        })
    }

    /// The kind of a national significant number, as `validator::number_type` finds it.
    fn kind(&self, national: &str) -> Type {
        if !self.general.matches(national) {
            return Type::Unknown;
        }
        if let Some((kind, _)) = self.special.iter().find(|(_, k)| k.matches(national)) {
            return *kind;
        }
        let mobile = self.mobile.as_ref();
        match &self.fixed_line {
            Some(fixed) if fixed.matches(national) => {
                let same = mobile.is_some_and(|m| m.source == fixed.source);
                if same || mobile.is_some_and(|m| m.matches(national)) {
                    Type::FixedLineOrMobile
                } else {
                    Type::FixedLine
                }
            }
            _ if mobile.is_some_and(|m| m.matches(national)) => Type::Mobile,
            _ => Type::Unknown,
        }
    }
}

static JAPAN: LazyLock<Option<Plan>> = LazyLock::new(Plan::japan);

/// The national significant number and kind of `digits`, a valid Japanese number typed with its
/// national prefix 0 or as `+81`; `None` when this reading does not apply or finds nothing valid.
pub(super) fn read(digits: &str) -> Option<(&str, Type)> {
    let national = match digits.strip_prefix("+81") {
        Some(national) => national,
        // "00…" are carrier and international prefixes, "010" Japan's international prefix.
        None => digits.strip_prefix('0').filter(|n| !n.starts_with("10"))?,
    };
    // A 0 left after either prefix is one the crate reads on its own terms.
    if !national.starts_with(|c: char| c.is_ascii_digit() && c != '0')
        || !national.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    match JAPAN.as_ref()?.kind(national) {
        Type::Unknown => None,
        kind => Some((national, kind)),
    }
}

/// The kind of a Japanese national significant number (which never starts with 0), unless
/// Japan's patterns failed to compile.
pub(super) fn kind(national: &str) -> Option<Type> {
    if national.starts_with('0') {
        return None;
    }
    JAPAN.as_ref().map(|plan| plan.kind(national))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every national prefix of one to three digits after the 0, each at every length from 6 to 13
    /// digits, with the rest of the digits from a fixed sequence.
    fn typed_numbers() -> Vec<String> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut digit = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'0' + (state % 10) as u8)
        };
        let mut numbers = Vec::new();
        for prefix in 0..1000 {
            for len in 6..=13 {
                let mut n = format!("0{prefix:03}");
                while n.len() < len {
                    n.push(digit());
                }
                n.truncate(len);
                numbers.push(n);
            }
        }
        numbers
    }

    /// The crate's reading of `typed` as a number in Japan: E.164 and kind, if valid.
    fn crate_reading(typed: &str) -> Option<(String, Type)> {
        phonenumber::parse(Some(phonenumber::country::Id::JP), typed)
            .ok()
            .map(|n| {
                let kind = n.number_type(&DATABASE);
                (format!("+{}{}", n.code().value(), n.national()), kind)
            })
            .filter(|(_, kind)| *kind != Type::Unknown)
    }

    /// This module's reading of `typed`, in the same shape.
    fn reading_here(typed: &str) -> Option<(String, Type)> {
        read(typed).map(|(national, kind)| (format!("+81{national}"), kind))
    }

    #[test]
    fn japanese_numbers_read_as_the_crate_reads_them() {
        let mut valid = 0;
        for typed in typed_numbers() {
            let crate_reading = crate_reading(&typed);
            let here = reading_here(&typed);
            let national_prefix_only =
                typed.starts_with('0') && !typed.starts_with("00") && !typed.starts_with("010");
            if national_prefix_only {
                // Valid or not, the same answer.
                assert_eq!(here, crate_reading, "{typed} read differently");
                valid += usize::from(here.is_some());
            } else {
                assert_eq!(here, None, "{typed} is the crate's to read");
            }
        }
        assert!(valid > 500, "only {valid} valid numbers among those read");
    }

    #[test]
    fn japanese_numbers_written_with_81_read_as_the_crate_reads_them() {
        let mut valid = 0;
        for typed in typed_numbers() {
            let international = format!("+81{}", &typed[1..]);
            let crate_reading = crate_reading(&international);
            let here = reading_here(&international);
            if typed[1..].starts_with('0') {
                assert_eq!(here, None, "{international} is the crate's to read");
            } else {
                assert_eq!(here, crate_reading, "{international} read differently");
                valid += usize::from(here.is_some());
            }
        }
        assert!(valid > 500, "only {valid} valid numbers among those read");
    }

    #[test]
    fn the_kind_of_a_japanese_number_is_the_crates() {
        let mut compared = 0;
        for typed in typed_numbers() {
            let national = &typed[1..];
            if national.starts_with('0') {
                continue;
            }
            let Ok(number) = phonenumber::parse(None, format!("+81{national}")) else {
                continue;
            };
            compared += 1;
            assert_eq!(
                kind(national),
                Some(number.number_type(&DATABASE)),
                "{typed}"
            );
        }
        assert!(compared > 3000, "only {compared} numbers compared");
    }

    #[test]
    fn prefixes_the_crate_reads_differently_are_left_to_it() {
        for typed in [
            "0090123456789",
            "0101234567890",
            "00377123456",
            "+8109012345678",
            "+12025550123",
            "9012345678",
        ] {
            assert_eq!(read(typed), None, "{typed}");
        }
        assert_eq!(read("09012345678"), Some(("9012345678", Type::Mobile)));
        assert_eq!(read("+819012345678"), Some(("9012345678", Type::Mobile)));
        assert_eq!(read("0312345678"), Some(("312345678", Type::FixedLine)));
        assert_eq!(read("0120123456"), Some(("120123456", Type::TollFree)));
        assert_eq!(read("05012345678"), Some(("5012345678", Type::Voip)));
    }
}
